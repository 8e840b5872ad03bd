package clientjs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func embedded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(dist, "dist/"+name)
	if err != nil {
		t.Fatalf("embedded %s: %v", name, err)
	}
	return b
}

func do(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVersion(t *testing.T) {
	got := Version()
	if !regexp.MustCompile(`^4\.8\.\d+$`).MatchString(got) {
		t.Fatalf("Version() = %q, want 4.8.x", got)
	}
	if want := strings.TrimSpace(string(embedded(t, "VERSION"))); got != want {
		t.Fatalf("Version() = %q, want %q (dist/VERSION)", got, want)
	}
}

func TestServesEmbeddedFiles(t *testing.T) {
	header := "/*!\n * Socket.IO v" + Version() + "\n"
	tests := []struct {
		path, file, contentType string
		header                  bool // starts with the shipped licence header
	}{
		{"/socket.io/socket.io.js", "socket.io.js", "application/javascript; charset=utf-8", true},
		{"/socket.io/socket.io.min.js", "socket.io.min.js", "application/javascript; charset=utf-8", true},
		{"/socket.io/socket.io.esm.min.js", "socket.io.esm.min.js", "application/javascript; charset=utf-8", true},
		{"/socket.io/socket.io.js.map", "socket.io.js.map", "application/json; charset=utf-8", false},
		{"/socket.io/socket.io.min.js.map", "socket.io.min.js.map", "application/json; charset=utf-8", false},
		{"/socket.io/socket.io.esm.min.js.map", "socket.io.esm.min.js.map", "application/json; charset=utf-8", false},
		// Query strings (cache busters) are ignored, as by the Node.js server.
		{"/socket.io/socket.io.js?v=123", "socket.io.js", "application/javascript; charset=utf-8", true},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			want := embedded(t, tc.file)
			for _, h := range []http.Handler{Handler(), Middleware(http.NotFoundHandler())} {
				res := do(t, h, http.MethodGet, tc.path, nil)
				got := readAll(t, res.Body)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", res.StatusCode)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("body: got %d bytes, want the %d bytes of dist/%s", len(got), len(want), tc.file)
				}
				if tc.header && !bytes.HasPrefix(got, []byte(header)) {
					t.Fatalf("body starts %q, want licence header %q", got[:min(len(got), 40)], header)
				}
				if got, want := res.Header.Get("Content-Type"), tc.contentType; got != want {
					t.Errorf("Content-Type = %q, want %q", got, want)
				}
				if got := res.Header.Get("Cache-Control"); !strings.HasPrefix(got, "public, max-age=") {
					t.Errorf("Cache-Control = %q, want public, max-age=...", got)
				}
				sum := sha256.Sum256(want)
				if got, want := res.Header.Get("ETag"), `"sha256-`+hex.EncodeToString(sum[:])[:32]+`"`; got != want {
					t.Errorf("ETag = %q, want %q", got, want)
				}
				if res.Header.Get("Content-Encoding") != "" {
					t.Errorf("Content-Encoding = %q without Accept-Encoding", res.Header.Get("Content-Encoding"))
				}
			}
		})
	}
}

func TestRevalidation(t *testing.T) {
	h := Handler()
	first := do(t, h, http.MethodGet, "/socket.io/socket.io.js", nil)
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	tests := []struct {
		name, inm string
		want      int
	}{
		{"same etag", etag, http.StatusNotModified},
		{"weak form", "W/" + etag, http.StatusNotModified},
		{"in a list", `"nope", ` + etag, http.StatusNotModified},
		{"star", "*", http.StatusNotModified},
		{"other etag", `"sha256-0000"`, http.StatusOK},
		{"etag of another file", do(t, h, http.MethodGet, "/socket.io/socket.io.min.js", nil).Header.Get("ETag"), http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, h, http.MethodGet, "/socket.io/socket.io.js", map[string]string{"If-None-Match": tc.inm})
			body := readAll(t, res.Body)
			if res.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.want)
			}
			if tc.want == http.StatusNotModified {
				if len(body) != 0 {
					t.Errorf("304 with a %d-byte body", len(body))
				}
				if got := res.Header.Get("ETag"); got != etag {
					t.Errorf("304 ETag = %q, want %q", got, etag)
				}
			}
		})
	}
}

func TestGzip(t *testing.T) {
	want := embedded(t, "socket.io.js")
	res := do(t, Handler(), http.MethodGet, "/socket.io/socket.io.js", map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d, Content-Encoding %q; want 200 gzip", res.StatusCode, res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, zr); !bytes.Equal(got, want) {
		t.Fatalf("gunzipped body differs from dist/socket.io.js (%d vs %d bytes)", len(got), len(want))
	}
	gzETag := res.Header.Get("ETag")
	res = do(t, Handler(), http.MethodGet, "/socket.io/socket.io.js", map[string]string{"If-None-Match": gzETag})
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidating the gzip ETag: status %d, want 304", res.StatusCode)
	}
	res = do(t, Handler(), http.MethodGet, "/socket.io/socket.io.js", map[string]string{"Accept-Encoding": "gzip;q=0"})
	if ce := res.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("gzip;q=0 got Content-Encoding %q", ce)
	}
}

func TestNotServed(t *testing.T) {
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/socket.io/nope.js", http.StatusNotFound},
		{http.MethodGet, "/socket.io/socket.io.msgpack.min.js", http.StatusNotFound},
		{http.MethodGet, "/socket.io/VERSION", http.StatusNotFound},
		{http.MethodGet, "/socket.io/SHA256SUMS", http.StatusNotFound},
		{http.MethodGet, "/socket.io/LICENSE", http.StatusNotFound},
		{http.MethodGet, "/socket.io/", http.StatusNotFound},
		{http.MethodGet, "/socket.io/dist/socket.io.js", http.StatusNotFound},
		{http.MethodGet, "/socket.io.js", http.StatusNotFound},
		{http.MethodGet, "/other/socket.io.js", http.StatusNotFound},
		{http.MethodPost, "/socket.io/socket.io.js", http.StatusMethodNotAllowed},
		{http.MethodHead, "/socket.io/socket.io.js", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := do(t, Handler(), tc.method, tc.path, nil)
			if res.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

func TestMiddlewarePassesThrough(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/socket.io/?EIO=4&transport=polling", http.StatusTeapot},
		{http.MethodPost, "/socket.io/?EIO=4&transport=polling&sid=x", http.StatusTeapot},
		{http.MethodPost, "/socket.io/socket.io.js", http.StatusTeapot},
		{http.MethodGet, "/socket.io/nope.js", http.StatusTeapot},
		{http.MethodGet, "/socket.io/socket.io.min.js", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			res := do(t, Middleware(next), tc.method, tc.target, nil)
			if res.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	got := strings.Join(Paths(), " ")
	want := "/socket.io/socket.io.esm.min.js /socket.io/socket.io.esm.min.js.map /socket.io/socket.io.js /socket.io/socket.io.js.map /socket.io/socket.io.min.js /socket.io/socket.io.min.js.map"
	if got != want {
		t.Fatalf("Paths() = %s\nwant %s", got, want)
	}
}

// TestSHA256SUMS checks that the embedded files are exactly the vendored ones:
// every line of dist/SHA256SUMS matches, and every embedded file is listed.
func TestSHA256SUMS(t *testing.T) {
	sums := embedded(t, "SHA256SUMS")
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("bad SHA256SUMS line %q", sc.Text())
		}
		sum := sha256.Sum256(embedded(t, name))
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, SHA256SUMS says %s", name, got, want)
		}
		listed[name] = true
	}
	entries, err := fs.ReadDir(dist, "dist")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n != "SHA256SUMS" && n != "VERSION" && !listed[n] {
			t.Errorf("dist/%s is embedded but not listed in SHA256SUMS", n)
		}
	}
	for _, n := range []string{"socket.io.js", "socket.io.min.js", "LICENSE"} {
		if !listed[n] {
			t.Errorf("%s missing from SHA256SUMS", n)
		}
	}
}
