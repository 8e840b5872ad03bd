package server_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chatd/chat/server"
)

// A fresh server's /metrics already has every refusal, store-error and
// login series at 0: a dashboard shows zeros instead of "no data", and an
// alert on an increase fires on the first refusal, not the second. The
// label values are read from this package's source, so a new
// WithLabelValues("...") that is not initialised makes this test fail.
func TestMetricsPresentFromStart(t *testing.T) {
	metricOf := map[string]string{
		"rejections":  `chat_rate_limited_total{limit="%s"} 0`,
		"storeErrors": `chat_store_errors_total{op="%s"} 0`,
		"logins":      `chat_logins_total{outcome="%s"} 0`,
	}
	call := regexp.MustCompile(`\.(rejections|storeErrors|logins)\.WithLabelValues\(((?:[^()]|\([^()]*\))*)\)`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder // the package's code, for finding label functions
	sources := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(src)
		if f != "metrics.go" { // metrics.go initialises from its lists: those are what is checked
			sources[f] = string(src)
		}
	}
	want := map[string][]string{}
	for f, src := range sources {
		for _, m := range call.FindAllStringSubmatch(src, -1) {
			values := labelValues(all.String(), m[2])
			if values == nil {
				t.Errorf("%s: %s.WithLabelValues(%s): neither a string literal nor a function returning literals, so this test cannot check that its series starts at 0", f, m[1], m[2])
			}
			for _, v := range values {
				if !slices.Contains(want[m[1]], v) {
					want[m[1]] = append(want[m[1]], v)
				}
			}
		}
	}
	// The scan must find what is known to exist, or it checks nothing.
	for field, known := range map[string][]string{
		"rejections":  {"connections_per_ip", "auth_per_ip", "login_per_user", "messages_per_user", "pages_per_socket", "slow_peer", "origin"},
		"storeErrors": {"history", "register", "login", "send", "older"},
		"logins":      {"ok", "failed"},
	} {
		for _, v := range known {
			if !slices.Contains(want[field], v) {
				t.Errorf("source scan did not find %s.WithLabelValues(%q)", field, v)
			}
		}
	}

	e := startServer(t, server.Config{}, nil)
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	lines := strings.Split(string(body), "\n")
	for field, values := range want {
		for _, v := range values {
			series := strings.Replace(metricOf[field], "%s", v, 1)
			if !slices.Contains(lines, series) {
				t.Errorf("fresh /metrics lacks %q", series)
			}
		}
	}
}

var (
	labelLiteral = regexp.MustCompile(`^"([a-z_]+)"$`)
	labelCall    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\(`)
	returnLabel  = regexp.MustCompile(`return "([a-z_]+)"`)
)

// labelValues returns the label values an argument of WithLabelValues can
// take: the literal itself, or every literal that the function it calls
// (declared in src) returns; nil when it cannot tell.
func labelValues(src, arg string) []string {
	arg = strings.TrimSpace(arg)
	if m := labelLiteral.FindStringSubmatch(arg); m != nil {
		return []string{m[1]}
	}
	m := labelCall.FindStringSubmatch(arg)
	if m == nil {
		return nil
	}
	start := strings.Index(src, "\nfunc "+m[1]+"(")
	if start < 0 {
		return nil
	}
	body := src[start:]
	if end := strings.Index(body, "\n}\n"); end >= 0 {
		body = body[:end]
	}
	var out []string
	for _, r := range returnLabel.FindAllStringSubmatch(body, -1) {
		out = append(out, r[1])
	}
	return out
}
