//go:build unix

package main

// Tests of the deployment files: docker-compose.yml, nginx.conf, Dockerfile
// and .dockerignore must agree with each other and with the server's
// defaults, and nginx.conf must have what Socket.IO needs behind a proxy and
// fail over fast. No Docker engine is needed: compose is validated by
// `docker compose config` when the plugin exists and always by parsing it
// here; nginx.conf is checked by parsing, by `nginx -t` and by a real
// failover run when nginx is installed (scripts/ensure-nginx.sh).

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.yaml.in/yaml/v3"
)

// --- checks as table rows ---------------------------------------------------

// deployCheck is one row of a table of checks: what is checked, what was
// found, what was expected and whether that is good enough.
type deployCheck struct {
	name      string
	got, want string
	ok        bool
}

func deployEq(name string, got, want any) deployCheck {
	g, w := fmt.Sprint(got), fmt.Sprint(want)
	return deployCheck{name, g, w, g == w}
}

func deployCond(name string, got, want any, ok bool) deployCheck {
	return deployCheck{name, fmt.Sprint(got), fmt.Sprint(want), ok}
}

func runDeployChecks(t *testing.T, checks []deployCheck) {
	t.Helper()
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
		}
	}
}

func readDeployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deployDefaults are the server's defaults, from the flag definitions
// themselves (environment cleared), so nginx.conf is checked against what
// the server really does.
func deployDefaults(t *testing.T) config {
	t.Helper()
	for _, k := range []string{"PORT", "PING_INTERVAL", "PING_TIMEOUT", "MAX_HTTP_BUFFER_SIZE"} {
		t.Setenv(k, "") // env() treats empty as unset
	}
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// --- nginx.conf ---------------------------------------------------------------

// ngxDirective is one directive of an nginx configuration; block holds the
// directives between its braces, if it has any.
type ngxDirective struct {
	name     string
	args     []string
	hasBlock bool
	block    []*ngxDirective
}

type ngxToken struct {
	text  string
	punct bool // one of ; { }
}

func ngxTokenize(src string) ([]ngxToken, error) {
	var toks []ngxToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, ngxToken{string(c), true})
			i++
		case c == '"' || c == '\'':
			var sb strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				sb.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated quote at byte %d", i)
			}
			toks = append(toks, ngxToken{sb.String(), false})
			i = j + 1
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}#", rune(src[j])) {
				j++
			}
			toks = append(toks, ngxToken{src[i:j], false})
			i = j
		}
	}
	return toks, nil
}

func parseNginx(src string) ([]*ngxDirective, error) {
	toks, err := ngxTokenize(src)
	if err != nil {
		return nil, err
	}
	pos := 0
	var parse func(depth int) ([]*ngxDirective, error)
	parse = func(depth int) ([]*ngxDirective, error) {
		var out []*ngxDirective
		var cur *ngxDirective
		for pos < len(toks) {
			tk := toks[pos]
			pos++
			switch {
			case !tk.punct && cur == nil:
				cur = &ngxDirective{name: tk.text}
			case !tk.punct:
				cur.args = append(cur.args, tk.text)
			case tk.text == ";" && cur != nil:
				out = append(out, cur)
				cur = nil
			case tk.text == "{" && cur != nil:
				b, err := parse(depth + 1)
				if err != nil {
					return nil, err
				}
				cur.hasBlock, cur.block = true, b
				out = append(out, cur)
				cur = nil
			case tk.text == "}" && cur == nil && depth > 0:
				return out, nil
			default:
				return nil, fmt.Errorf("unexpected %q after token %d", tk.text, pos)
			}
		}
		if cur != nil || depth > 0 {
			return nil, errors.New("unexpected end of file")
		}
		return out, nil
	}
	return parse(0)
}

// ngxAll returns the directives called name whose arguments start with args.
func ngxAll(ds []*ngxDirective, name string, args ...string) []*ngxDirective {
	var out []*ngxDirective
	for _, d := range ds {
		if d.name == name && len(d.args) >= len(args) && slices.Equal(d.args[:len(args)], args) {
			out = append(out, d)
		}
	}
	return out
}

func ngxOne(ds []*ngxDirective, name string, args ...string) *ngxDirective {
	if all := ngxAll(ds, name, args...); len(all) > 0 {
		return all[0]
	}
	return nil
}

// ngxArgs is the arguments of the first directive called name, looking from
// the innermost scope outwards as nginx's inheritance does; nil if none.
func ngxArgs(scopes [][]*ngxDirective, name string) []string {
	for _, s := range scopes {
		if d := ngxOne(s, name); d != nil {
			return d.args
		}
	}
	return nil
}

// ngxHeaders is the proxy_set_header map in effect: nginx inherits the
// directives of the nearest level that has any.
func ngxHeaders(scopes [][]*ngxDirective) map[string]string {
	for _, s := range scopes {
		if all := ngxAll(s, "proxy_set_header"); len(all) > 0 {
			h := map[string]string{}
			for _, d := range all {
				if len(d.args) == 2 {
					h[strings.ToLower(d.args[0])] = d.args[1]
				}
			}
			return h
		}
	}
	return nil
}

var ngxTimeRE = regexp.MustCompile(`^(?:(\d+)(ms|s|m|h|d)?)+$`)
var ngxTimePartRE = regexp.MustCompile(`(\d+)(ms|s|m|h|d)?`)

// ngxDuration parses an nginx time ("20s", "1m30s", "500ms"; a bare number
// is seconds); -1 if it is not one.
func ngxDuration(s string) time.Duration {
	if !ngxTimeRE.MatchString(s) {
		return -1
	}
	var d time.Duration
	for _, m := range ngxTimePartRE.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "ms": time.Millisecond,
			"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
		d += time.Duration(n) * unit
	}
	return d
}

// ngxSize parses an nginx size ("256k", "1m", "4096"); -1 if it is not one.
func ngxSize(s string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n * mult
}

// deployNginx is what the tests need to know of nginx.conf.
type deployNginx struct {
	top, http, server, location []*ngxDirective
	upstreamName                string
	upstream                    []*ngxDirective // its `server` lines
	primary, backup             *ngxDirective   // the upstream server lines
	listen                      []string
}

// scopes is the location's inheritance chain, innermost first.
func (n *deployNginx) scopes() [][]*ngxDirective {
	return [][]*ngxDirective{n.location, n.server, n.http}
}

func loadDeployNginx(t *testing.T, src string) *deployNginx {
	t.Helper()
	top, err := parseNginx(src)
	if err != nil {
		t.Fatalf("nginx.conf: %v", err)
	}
	n := &deployNginx{top: top}
	httpD := ngxOne(top, "http")
	if httpD == nil || !httpD.hasBlock {
		t.Fatal("nginx.conf: no http { } block")
	}
	n.http = httpD.block
	// The server block with `location /`.
	for _, s := range ngxAll(n.http, "server") {
		if loc := ngxOne(s.block, "location", "/"); loc != nil {
			n.server, n.location = s.block, loc.block
			if l := ngxOne(s.block, "listen"); l != nil {
				n.listen = l.args
			}
		}
	}
	if n.location == nil {
		t.Fatal("nginx.conf: no server { location / { } }")
	}
	pass := ngxArgs([][]*ngxDirective{n.location}, "proxy_pass")
	if len(pass) != 1 || !strings.HasPrefix(pass[0], "http://") {
		t.Fatalf("nginx.conf: location / has proxy_pass %q, want http://<upstream>", pass)
	}
	n.upstreamName = strings.TrimPrefix(pass[0], "http://")
	up := ngxOne(n.http, "upstream", n.upstreamName)
	if up == nil {
		t.Fatalf("nginx.conf: proxy_pass %s names no upstream block", pass[0])
	}
	n.upstream = ngxAll(up.block, "server")
	for _, s := range n.upstream {
		if slices.Contains(s.args, "backup") {
			n.backup = s
		} else {
			n.primary = s
		}
	}
	if len(n.upstream) != 2 || n.primary == nil || n.backup == nil {
		t.Fatalf("nginx.conf: upstream %s has servers %v, want one primary and one `backup`", n.upstreamName, deployServerAddrs(n.upstream))
	}
	return n
}

func deployServerAddrs(ds []*ngxDirective) []string {
	var out []string
	for _, d := range ds {
		if len(d.args) > 0 {
			out = append(out, d.args[0])
		}
	}
	return out
}

// ngxParam is the value of a key=value parameter of an upstream server line.
func ngxParam(d *ngxDirective, key string) (string, bool) {
	for _, a := range d.args[1:] {
		if v, ok := strings.CutPrefix(a, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// --- docker-compose.yml ----------------------------------------------------------

type deployCompose struct {
	Services map[string]deployService `yaml:"services"`
	Volumes  map[string]any           `yaml:"volumes"`
}

type deployService struct {
	Image       string      `yaml:"image"`
	Build       yaml.Node   `yaml:"build"`
	Environment yaml.Node   `yaml:"environment"`
	Ports       []yaml.Node `yaml:"ports"`
	Volumes     []yaml.Node `yaml:"volumes"`
	Entrypoint  yaml.Node   `yaml:"entrypoint"`
	Command     yaml.Node   `yaml:"command"`
	DependsOn   yaml.Node   `yaml:"depends_on"`
	Healthcheck struct {
		Test yaml.Node `yaml:"test"`
	} `yaml:"healthcheck"`
}

var composeVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}`)

// composeExpand interpolates ${VAR}, ${VAR:-default} and $$ as docker compose
// does with none of the variables set, so the result does not depend on the
// environment of the test.
func composeExpand(s string) string {
	s = composeVarRE.ReplaceAllString(s, "$2")
	return strings.ReplaceAll(s, "$$", "$")
}

func nodeStrings(n yaml.Node) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
		return out
	}
	return nil
}

// nodeMap reads a mapping of scalars, or a list of KEY=VALUE (compose allows
// both for environment).
func nodeMap(n yaml.Node) map[string]string {
	m := map[string]string{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			k, v, _ := strings.Cut(c.Value, "=")
			m[k] = v
		}
	}
	return m
}

func (s deployService) env() map[string]string {
	m := nodeMap(s.Environment)
	for k, v := range m {
		m[k] = composeExpand(v)
	}
	return m
}

func (s deployService) buildContext() string {
	if s.Build.Kind == yaml.MappingNode {
		return nodeMap(s.Build)["context"]
	}
	return s.Build.Value
}

// ports returns published -> target for each published port.
func (s deployService) ports() map[string]string {
	m := map[string]string{}
	for _, p := range s.Ports {
		if p.Kind == yaml.MappingNode {
			pm := nodeMap(p)
			m[pm["published"]] = pm["target"]
			continue
		}
		spec, _, _ := strings.Cut(p.Value, "/") // drop /tcp
		parts := strings.Split(spec, ":")       // [ip:]published:target
		if len(parts) >= 2 {
			m[parts[len(parts)-2]] = parts[len(parts)-1]
		}
	}
	return m
}

// mounts returns target -> source of each bind mount or volume.
func (s deployService) mounts() map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		if v.Kind == yaml.MappingNode {
			vm := nodeMap(v)
			m[vm["target"]] = vm["source"]
			continue
		}
		parts := strings.Split(v.Value, ":")
		if len(parts) >= 2 {
			m[parts[1]] = parts[0]
		}
	}
	return m
}

// dependsOn returns service -> condition.
func (s deployService) dependsOn() map[string]string {
	m := map[string]string{}
	switch s.DependsOn.Kind {
	case yaml.SequenceNode:
		for _, c := range s.DependsOn.Content {
			m[c.Value] = "service_started"
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(s.DependsOn.Content); i += 2 {
			m[s.DependsOn.Content[i].Value] = nodeMap(*s.DependsOn.Content[i+1])["condition"]
		}
	}
	return m
}

func loadDeployCompose(t *testing.T) deployCompose {
	t.Helper()
	var c deployCompose
	if err := yaml.Unmarshal([]byte(readDeployFile(t, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

var sedExprRE = regexp.MustCompile(`'s/((?:[^/\\']|\\.)*)/((?:[^/\\']|\\.)*)/g?'`)

// applySed applies the `sed -e 's/A/B/'` expressions found in script to
// text, the way the nginx container rewrites nginx.conf.
func applySed(t *testing.T, script, text string) (string, int) {
	t.Helper()
	exprs := sedExprRE.FindAllStringSubmatch(script, -1)
	for _, e := range exprs {
		re, err := regexp.Compile(e[1]) // the BRE subset used (\.) reads the same in RE2
		if err != nil {
			t.Fatalf("sed expression %q: %v", e[0], err)
		}
		repl := regexp.MustCompile(`\\(.)`).ReplaceAllString(e[2], "$1")
		text = re.ReplaceAllLiteralString(text, repl)
	}
	return text, len(exprs)
}

// --- Dockerfile ------------------------------------------------------------------

type deployStage struct {
	from                     string
	expose, users, env, runs []string
}

func parseDockerfile(src string) []deployStage {
	var stages []deployStage
	var logical []string
	cur := ""
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur += s + " "
			continue
		}
		if cur += trimmed; strings.TrimSpace(cur) != "" {
			logical = append(logical, strings.TrimSpace(cur))
		}
		cur = ""
	}
	for _, l := range logical {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			stages = append(stages, deployStage{from: strings.Fields(rest)[0]})
		case "EXPOSE":
			stages[len(stages)-1].expose = append(stages[len(stages)-1].expose, strings.Fields(rest)...)
		case "USER":
			stages[len(stages)-1].users = append(stages[len(stages)-1].users, rest)
		case "ENV":
			stages[len(stages)-1].env = append(stages[len(stages)-1].env, strings.Fields(rest)...)
		case "RUN":
			stages[len(stages)-1].runs = append(stages[len(stages)-1].runs, rest)
		}
	}
	return stages
}

// goModGo is go.mod's `go` line, e.g. "1.26.8".
func goModGo(t *testing.T) string {
	t.Helper()
	for _, l := range strings.Split(readDeployFile(t, "go.mod"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// --- the tests ----------------------------------------------------------------------

// TestDeployComposeConfig validates docker-compose.yml with docker compose
// itself when the plugin is installed. Without it this only says so:
// TestDeployComposeMatchesNginx checks the file either way.
func TestDeployComposeConfig(t *testing.T) {
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Logf("docker compose is not available (%v: %s); docker-compose.yml is checked by parsing only (TestDeployComposeMatchesNginx)",
			err, bytes.TrimSpace(out))
		return
	}
	cmd := exec.Command("docker", "compose", "-f", "docker-compose.yml", "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose config -q: %v\n%s", err, out)
	}
}

// TestDeployComposeMatchesNginx checks that docker-compose.yml, nginx.conf and
// the Dockerfile describe the same deployment: the report's primary on 3000
// and backup on 3001 behind nginx on 80, both on the compose PostgreSQL.
func TestDeployComposeMatchesNginx(t *testing.T) {
	c := loadDeployCompose(t)
	confText := readDeployFile(t, "nginx.conf")
	n := loadDeployNginx(t, confText)

	var checks []deployCheck
	for _, name := range []string{"postgres", "primary", "backup", "nginx"} {
		_, ok := c.Services[name]
		checks = append(checks, deployEq("compose service "+name+" exists", ok, true))
	}
	runDeployChecks(t, checks)
	if t.Failed() {
		t.FailNow()
	}
	pg, primary, backup, ngx := c.Services["postgres"], c.Services["primary"], c.Services["backup"], c.Services["nginx"]
	pgEnv := pg.env()
	pgUser := cmp.Or(pgEnv["POSTGRES_USER"], "postgres")
	pgDB := cmp.Or(pgEnv["POSTGRES_DB"], pgUser) // the image's default database is the user's name

	upHost := func(d *ngxDirective) (string, string) {
		h, p, err := net.SplitHostPort(d.args[0])
		if err != nil {
			return d.args[0], ""
		}
		return h, p
	}
	pHost, pPort := upHost(n.primary)
	bHost, bPort := upHost(n.backup)
	checks = []deployCheck{
		deployEq("nginx.conf primary upstream host", pHost, "127.0.0.1"),
		deployEq("nginx.conf backup upstream host", bHost, "127.0.0.1"),
		deployEq("primary PORT vs nginx.conf primary upstream port", primary.env()["PORT"], pPort),
		deployEq("backup PORT vs nginx.conf backup upstream port", backup.env()["PORT"], bPort),
		deployEq("primary PORT (the report's)", primary.env()["PORT"], "3000"),
		deployEq("backup PORT (the report's)", backup.env()["PORT"], "3001"),
		deployEq("primary build context", primary.buildContext(), "."),
		deployEq("backup build context", backup.buildContext(), "."),
		deployEq("backup image vs primary image", backup.Image, primary.Image),
		deployCond("postgres healthcheck", strings.Join(nodeStrings(pg.Healthcheck.Test), " "), "a pg_isready command",
			strings.Contains(strings.Join(nodeStrings(pg.Healthcheck.Test), " "), "pg_isready")),
	}

	// Both servers use the compose PostgreSQL.
	for _, s := range []struct {
		name string
		svc  deployService
	}{{"primary", primary}, {"backup", backup}} {
		raw := s.svc.env()["DATABASE_URL"]
		u, err := url.Parse(raw)
		if err != nil {
			checks = append(checks, deployCond(s.name+" DATABASE_URL", raw, "a postgres:// URL", false))
			continue
		}
		pass, _ := u.User.Password()
		checks = append(checks,
			deployCond(s.name+" DATABASE_URL scheme", u.Scheme, "postgres or postgresql", u.Scheme == "postgres" || u.Scheme == "postgresql"),
			deployEq(s.name+" DATABASE_URL host (the postgres service)", u.Hostname(), "postgres"),
			deployCond(s.name+" DATABASE_URL port", u.Port(), "5432 or empty", u.Port() == "" || u.Port() == "5432"),
			deployEq(s.name+" DATABASE_URL database vs POSTGRES_DB", strings.TrimPrefix(u.Path, "/"), pgDB),
			deployEq(s.name+" DATABASE_URL database (the report's)", strings.TrimPrefix(u.Path, "/"), "chat"),
			deployEq(s.name+" DATABASE_URL user vs POSTGRES_USER", u.User.Username(), pgUser),
			deployEq(s.name+" DATABASE_URL password vs POSTGRES_PASSWORD", pass, pgEnv["POSTGRES_PASSWORD"]),
			deployEq(s.name+" DATABASE_URL sslmode", u.Query().Get("sslmode"), "disable"),
			deployEq(s.name+" depends_on postgres", s.svc.dependsOn()["postgres"], "service_healthy"),
		)
	}

	// The postgres data volume is a declared named volume.
	pgData, named := pg.mounts()["/var/lib/postgresql/data"], false
	if pgData != "" {
		_, named = c.Volumes[pgData]
	}
	checks = append(checks, deployCond("postgres data volume", pgData, "a named volume declared under volumes:", named))

	// nginx: publishes 80, listens on 80, runs the repository's nginx.conf
	// with the upstream addresses rewritten to the service names.
	listen := ""
	if len(n.listen) > 0 {
		listen = n.listen[0]
	}
	checks = append(checks,
		deployEq("nginx service publishes port 80 to", ngx.ports()["80"], "80"),
		deployEq("nginx.conf listen", listen, "80"),
	)
	script := strings.Join(append(nodeStrings(ngx.Entrypoint), nodeStrings(ngx.Command)...), " ")
	mountTarget := ""
	for target, source := range ngx.mounts() {
		if filepath.Clean(source) == "nginx.conf" {
			mountTarget = target
		}
	}
	checks = append(checks,
		deployCond("nginx service mounts ./nginx.conf at", mountTarget, "some path", mountTarget != ""),
		deployCond("nginx command reads the mounted nginx.conf", script, "mentions "+mountTarget, mountTarget != "" && strings.Contains(script, mountTarget)),
		deployCond("nginx command writes /etc/nginx/nginx.conf", script, "> /etc/nginx/nginx.conf",
			strings.Contains(script, "> /etc/nginx/nginx.conf")),
		deployCond("nginx command runs nginx in the foreground", script, "exec nginx -g 'daemon off;'",
			strings.Contains(script, "exec nginx -g 'daemon off;'")),
	)
	rewritten, nexpr := applySed(t, script, confText)
	rn := loadDeployNginx(t, rewritten)
	checks = append(checks,
		deployEq("sed expressions in the nginx command", nexpr, 2),
		deployEq("compose nginx.conf primary upstream", rn.primary.args[0], "primary:"+primary.env()["PORT"]),
		deployEq("compose nginx.conf backup upstream", rn.backup.args[0], "backup:"+backup.env()["PORT"]),
		deployEq("compose nginx.conf: only the upstream lines change", deployDiffLines(confText, rewritten), 2),
	)

	// Dockerfile: what compose builds.
	stages := parseDockerfile(readDeployFile(t, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a final stage", len(stages))
	}
	final := stages[len(stages)-1]
	user := ""
	if len(final.users) > 0 {
		user = final.users[len(final.users)-1]
	}
	uid, _, _ := strings.Cut(user, ":")
	envPort := ""
	for _, kv := range final.env {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			envPort = v
		}
	}
	buildFrom, cgoOff := stages[0].from, false
	for _, st := range stages[:len(stages)-1] {
		for _, r := range st.runs {
			cgoOff = cgoOff || (strings.Contains(r, "CGO_ENABLED=0") && strings.Contains(r, "go build"))
		}
	}
	checks = append(checks,
		deployCond("Dockerfile final stage EXPOSE", final.expose, "contains primary PORT "+primary.env()["PORT"],
			slices.Contains(final.expose, primary.env()["PORT"])),
		deployCond("Dockerfile final stage ENV PORT", envPort, "empty or "+primary.env()["PORT"],
			envPort == "" || envPort == primary.env()["PORT"]),
		deployCond("Dockerfile final stage USER", user, "a non-root user", uid != "" && uid != "root" && uid != "0"),
		deployEq("Dockerfile build stage Go version (go.mod's go line)", majorMinor(strings.TrimPrefix(strings.Split(buildFrom, "-")[0], "golang:")), majorMinor(goModGo(t))),
		deployEq("Dockerfile builds with CGO_ENABLED=0", cgoOff, true),
	)

	// .dockerignore keeps the context small.
	ignore := strings.Fields(readDeployFile(t, ".dockerignore"))
	checks = append(checks,
		deployEq(".dockerignore has .git", slices.Contains(ignore, ".git"), true),
		deployEq(".dockerignore has **/node_modules", slices.Contains(ignore, "**/node_modules"), true),
	)
	runDeployChecks(t, checks)
}

func deployDiffLines(a, b string) int {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al) != len(bl) {
		return -1
	}
	n := 0
	for i := range al {
		if al[i] != bl[i] {
			n++
		}
	}
	return n
}

// TestDeployNginxDirectives checks that nginx.conf has what Socket.IO needs
// behind a proxy and what makes the failover fast, against the server's
// defaults.
func TestDeployNginxDirectives(t *testing.T) {
	def := deployDefaults(t)
	n := loadDeployNginx(t, readDeployFile(t, "nginx.conf"))
	sc := n.scopes()
	arg := func(name string) string { return strings.Join(ngxArgs(sc, name), " ") }
	h := ngxHeaders(sc)

	heartbeat := def.pingInterval + def.pingTimeout
	readTimeout := ngxDuration(arg("proxy_read_timeout"))
	sendTimeout := ngxDuration(arg("proxy_send_timeout"))
	connectTimeout := ngxDuration(arg("proxy_connect_timeout"))
	nextTimeout := ngxDuration(arg("proxy_next_upstream_timeout"))
	maxBody := ngxSize(arg("client_max_body_size"))
	next := ngxArgs(sc, "proxy_next_upstream")
	maxFails, _ := ngxParam(n.primary, "max_fails")
	failTimeout, hasFailTimeout := ngxParam(n.primary, "fail_timeout")

	mapD := ngxOne(n.http, "map", "$http_upgrade", "$connection_upgrade")
	mapEntries := map[string]string{}
	if mapD != nil {
		for _, d := range mapD.block {
			mapEntries[d.name] = strings.Join(d.args, " ")
		}
	}

	checks := []deployCheck{
		// No process-wide settings: the tests and non-root runs pass them
		// with -g, compose uses the image's defaults.
		deployEq("top-level pid", ngxOne(n.top, "pid") != nil, false),
		deployEq("top-level error_log", ngxOne(n.top, "error_log") != nil, false),
		deployEq("top-level user", ngxOne(n.top, "user") != nil, false),
		deployEq("events block", ngxOne(n.top, "events") != nil, true),

		// WebSocket through the proxy.
		deployEq("proxy_http_version", arg("proxy_http_version"), "1.1"),
		deployEq("proxy_set_header Upgrade", h["upgrade"], "$http_upgrade"),
		deployEq("proxy_set_header Connection", h["connection"], "$connection_upgrade"),
		deployEq("map $http_upgrade $connection_upgrade: default", mapEntries["default"], "upgrade"),
		deployEq("map $http_upgrade $connection_upgrade: ''", mapEntries[""], "close"),
		deployEq("proxy_set_header Host", h["host"], "$host"),
		deployEq("proxy_set_header X-Forwarded-For", h["x-forwarded-for"], "$proxy_add_x_forwarded_for"),
		deployEq("proxy_set_header X-Forwarded-Proto", h["x-forwarded-proto"], "$scheme"),
		deployEq("proxy_set_header X-Real-IP", h["x-real-ip"], "$remote_addr"),

		// Timeouts against the heartbeat: a healthy connection carries a
		// ping (and its answer) every PING_INTERVAL, so the read timeout
		// must exceed it, with a margin; it is also how nginx notices a
		// hung primary, so it must not be much longer: clients leave a hung
		// server after PING_INTERVAL + PING_TIMEOUT and then wait this long
		// on their first reconnect, and the sum must stay under 20 s.
		deployCond("proxy_read_timeout", readTimeout, fmt.Sprintf("> PING_INTERVAL (%v) + 1s", def.pingInterval),
			readTimeout >= def.pingInterval+time.Second),
		deployCond("proxy_read_timeout", readTimeout, fmt.Sprintf("+ PING_INTERVAL + PING_TIMEOUT (%v) < 20s", heartbeat),
			readTimeout+heartbeat < 20*time.Second),
		deployCond("proxy_send_timeout", arg("proxy_send_timeout"), fmt.Sprintf("unset or >= PING_INTERVAL (%v) + 1s", def.pingInterval),
			arg("proxy_send_timeout") == "" || sendTimeout >= def.pingInterval+time.Second),
		deployCond("proxy_next_upstream_timeout", nextTimeout, fmt.Sprintf("> proxy_read_timeout (%v), or the backup is never tried after a hang", readTimeout),
			nextTimeout > readTimeout),
		deployCond("proxy_connect_timeout", connectTimeout, "set, at most 2s", connectTimeout > 0 && connectTimeout <= 2*time.Second),

		// Fast failover.
		deployEq("primary max_fails", maxFails, "1"),
		deployCond("primary fail_timeout", failTimeout, "set", hasFailTimeout && ngxDuration(failTimeout) > 0),
		deployEq("backup server has no max_fails", func() bool { _, ok := ngxParam(n.backup, "max_fails"); return ok }(), false),
		deployEq("upstream zone (failure state shared by the workers)", ngxOne(ngxOne(n.http, "upstream", n.upstreamName).block, "zone") != nil, true),
		deployEq("proxy_next_upstream_tries", arg("proxy_next_upstream_tries"), "2"),
		deployCond("proxy_next_upstream_timeout", nextTimeout, fmt.Sprintf("> proxy_connect_timeout (%v)", connectTimeout),
			nextTimeout > connectTimeout),

		// Long-polling.
		deployEq("proxy_buffering", arg("proxy_buffering"), "off"),
		deployCond("client_max_body_size", arg("client_max_body_size"), fmt.Sprintf(">= MAX_HTTP_BUFFER_SIZE (%d bytes)", def.maxBuffer),
			maxBody >= def.maxBuffer),
		deployCond("proxy_request_buffering", arg("proxy_request_buffering"), "not off (POSTs are re-sent from the buffer)",
			arg("proxy_request_buffering") != "off"),
	}
	for _, w := range []string{"error", "timeout", "http_502", "http_503", "http_504", "non_idempotent"} {
		checks = append(checks, deployCond("proxy_next_upstream", next, "contains "+w, slices.Contains(next, w)))
	}
	// Paths relative to the prefix, so that -p <dir> works without root.
	for _, name := range []string{"access_log", "client_body_temp_path", "proxy_temp_path"} {
		a := ngxArgs(sc, name)
		checks = append(checks, deployCond(name, a, "off or a path relative to the prefix",
			len(a) > 0 && (a[0] == "off" || !filepath.IsAbs(a[0]))))
	}
	runDeployChecks(t, checks)
}

// deployNginxBinary returns nginx's path, or skips.
func deployNginxBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not on PATH; scripts/ensure-nginx.sh installs it")
	}
	return p
}

// deployNginxPrefix writes nginx.conf, rewritten to run on loopback ports,
// into a fresh prefix directory with its logs/ directory.
func deployNginxPrefix(t *testing.T, primaryPort, backupPort, listenPort int) string {
	t.Helper()
	conf := readDeployFile(t, "nginx.conf")
	for _, s := range []string{"127.0.0.1:3000", "127.0.0.1:3001", "listen 80;"} {
		if !strings.Contains(conf, s) {
			t.Fatalf("nginx.conf does not contain %q", s)
		}
	}
	conf = strings.NewReplacer(
		"127.0.0.1:3000", fmt.Sprintf("127.0.0.1:%d", primaryPort),
		"127.0.0.1:3001", fmt.Sprintf("127.0.0.1:%d", backupPort),
		"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", listenPort),
	).Replace(conf)
	// Not t.TempDir: its parent is private (0700), and when the tests run as
	// root nginx's workers run as nobody and must reach the temp directories.
	dir, err := os.MkdirTemp("", "chatd-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func deployNginxGlobals(dir string, daemonOff bool) string {
	g := fmt.Sprintf("pid %s; error_log %s;", filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"))
	if daemonOff {
		g = "daemon off; " + g
	}
	return g
}

// TestDeployNginxConfigTest runs `nginx -t` on nginx.conf rewritten as the
// header of nginx.conf describes.
func TestDeployNginxConfigTest(t *testing.T) {
	bin := deployNginxBinary(t)
	dir := deployNginxPrefix(t, 3400, 3401, 3402) // -t opens no sockets
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", deployNginxGlobals(dir, false)).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// deployBackend stands for a chat server: it answers with its name and
// what it received, and echoes WebSocket messages prefixed by its name.
func deployBackend(name string) http.Handler {
	up := websocket.Upgrader{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			mt, msg, err := c.ReadMessage()
			if err == nil {
				c.WriteMessage(mt, append([]byte(name+":"), msg...))
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-Host", r.Host)
		w.Header().Set("X-Got-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Got-Forwarded-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Got-Real-IP", r.Header.Get("X-Real-IP"))
		w.Header().Set("X-Got-Body", strconv.Itoa(len(body)))
		io.WriteString(w, name)
	})
}

// deployServe serves h on l until the returned function is called.
func deployServe(l net.Listener, h http.Handler) (stop func()) {
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	return func() { srv.Close() }
}

func deployListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDeployNginxFailover runs nginx.conf for real in front of two stand-in
// servers: requests, headers and WebSocket upgrades reach the primary; when
// the primary dies the very next GET and POST are answered by the backup,
// within a second; when it comes back, nginx returns to it after
// fail_timeout.
func TestDeployNginxFailover(t *testing.T) {
	bin := deployNginxBinary(t)
	if testing.Short() {
		t.Skip("-short: starts nginx")
	}
	pl := deployListen(t, "127.0.0.1:0")
	bl := deployListen(t, "127.0.0.1:0")
	stopPrimary := deployServe(pl, deployBackend("primary"))
	defer func() { stopPrimary() }()
	stopBackup := deployServe(bl, deployBackend("backup"))
	defer stopBackup()
	free := deployListen(t, "127.0.0.1:0")
	listenPort := free.Addr().(*net.TCPAddr).Port
	free.Close()

	primaryAddr := pl.Addr().String()
	dir := deployNginxPrefix(t, pl.Addr().(*net.TCPAddr).Port, bl.Addr().(*net.TCPAddr).Port, listenPort)
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", deployNginxGlobals(dir, true))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // master and workers in one group
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // fast shutdown: the master stops its workers
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	errorLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return out.String() + string(b)
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", listenPort)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	type answer struct {
		status int
		body   string
		header http.Header
		took   time.Duration
	}
	do := func(method, body string) (answer, error) {
		start := time.Now()
		req, _ := http.NewRequest(method, base+"/socket.io/?EIO=4&transport=polling", strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b), resp.Header, time.Since(start)}, nil
	}
	ws := func() (string, error) {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws", listenPort), nil)
		if err != nil {
			return "", err
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
			return "", err
		}
		_, msg, err := c.ReadMessage()
		return string(msg), err
	}

	// nginx up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, err := do("GET", ""); err == nil && a.status == 200 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("nginx exited: %v\n%s", err, errorLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not answer on %s within 10s\n%s", base, errorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}

	a, err := do("GET", "")
	if err != nil {
		t.Fatal(err)
	}
	post, err := do("POST", strings.Repeat("x", 100<<10)) // a large polling POST
	if err != nil {
		t.Fatal(err)
	}
	wsGot, wsErr := ws()
	checks := []deployCheck{
		deployEq("GET through nginx answered by", a.body, "primary"),
		deployEq("Host seen by the server ($host: the name, without the port)", a.header.Get("X-Got-Host"), "127.0.0.1"),
		deployEq("X-Forwarded-For seen by the server", a.header.Get("X-Got-Forwarded-For"), "127.0.0.1"),
		deployEq("X-Forwarded-Proto seen by the server", a.header.Get("X-Got-Forwarded-Proto"), "http"),
		deployEq("X-Real-IP seen by the server", a.header.Get("X-Got-Real-IP"), "127.0.0.1"),
		deployEq("100 KiB POST answered by", post.body, "primary"),
		deployEq("100 KiB POST body size seen by the server", post.header.Get("X-Got-Body"), strconv.Itoa(100<<10)),
		deployEq("WebSocket echo through nginx (error)", fmt.Sprint(wsErr), "<nil>"),
		deployEq("WebSocket echo through nginx", wsGot, "primary:hello"),
	}
	runDeployChecks(t, checks)

	// The primary dies: the next requests go to the backup at once.
	stopPrimary()
	killed := time.Now()
	first, err1 := do("GET", "")
	post, err2 := do("POST", "42[\"send message\",\"hi\"]")
	wsGot, wsErr = ws()
	took := time.Since(killed)
	checks = []deployCheck{
		deployEq("first GET after the primary died (error)", fmt.Sprint(err1), "<nil>"),
		deployEq("first GET after the primary died: status", first.status, 200),
		deployEq("first GET after the primary died: answered by", first.body, "backup"),
		deployCond("first GET after the primary died: took", first.took, "< 1s", first.took < time.Second),
		deployEq("POST after the primary died (error)", fmt.Sprint(err2), "<nil>"),
		deployEq("POST after the primary died: answered by", post.body, "backup"),
		deployEq("WebSocket after the primary died (error)", fmt.Sprint(wsErr), "<nil>"),
		deployEq("WebSocket after the primary died", wsGot, "backup:hello"),
		deployCond("GET + POST + WebSocket after the primary died took", took, "< 1s", took < time.Second),
	}
	runDeployChecks(t, checks)
	t.Logf("failover: first request after the primary died answered by %q in %v; GET+POST+WebSocket in %v", first.body, first.took, took)

	// The primary comes back on the same address: nginx probes it again
	// after fail_timeout and returns to it.
	n := loadDeployNginx(t, readDeployFile(t, "nginx.conf"))
	ft, _ := ngxParam(n.primary, "fail_timeout")
	failTimeout := ngxDuration(ft)
	stopPrimary = deployServe(deployListen(t, primaryAddr), deployBackend("primary"))
	back := time.Now()
	for {
		a, err := do("GET", "")
		if err == nil && a.body == "primary" {
			t.Logf("back on the primary %v after it returned (fail_timeout=%s)", time.Since(back).Round(10*time.Millisecond), ft)
			break
		}
		if err != nil || a.status != 200 {
			t.Errorf("while the primary returns: GET got %d %q (%v), want 200 from either server", a.status, a.body, err)
		}
		if time.Since(back) > failTimeout+3*time.Second {
			t.Fatalf("still not back on the primary %v after it returned, want within fail_timeout (%s)\n%s", time.Since(back), ft, errorLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
