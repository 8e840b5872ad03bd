// Package clientjs serves the stock socket.io-client browser bundle from the
// binary, at the URLs where the Node.js socket.io server serves it.
//
// Why: pages written for the Node.js chat server load the client with
// <script src="/socket.io/socket.io.js">. The Node server answers that URL from
// the socket.io package's client-dist/ folder; without this package such a
// page would get a 404 and never connect (socketio.Options.ServeClient mounts
// it in front of the engine). The files in dist/ are the unmodified ones from the npm
// package socket.io-client (the same build the Node server ships), pinned by
// dist/VERSION and verified by dist/SHA256SUMS; scripts/update-socketio-client.sh
// replaces them and checks them (--check).
//
// The package imports nothing from the rest of the repository, so it can be
// mounted on any mux:
//
//	mux.Handle(clientjs.Prefix, clientjs.Middleware(socketIOHandler))
//
// or, one route per file:
//
//	for _, p := range clientjs.Paths() {
//		mux.Handle(p, clientjs.Handler())
//	}
package clientjs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Prefix is the URL path under which the files are served; it is the default
// `path` option of both the Node.js socket.io server and socket.io-client.
const Prefix = "/socket.io/"

// CacheControl is sent with every file. The URL carries no version, so the
// cache lifetime is kept short (one hour) and revalidation is cheap: the ETag is
// the file's sha256, so a client whose copy is current gets a 304 with no body,
// and a server upgrade that changes the bundle is picked up within the hour.
// (The Node.js server sends max-age=0 with a version ETag.)
const CacheControl = "public, max-age=3600"

//go:embed dist
var dist embed.FS

// served lists the dist/ files that are reachable over HTTP, in the order of
// the Node.js server's CLIENT_FILES (minus the msgpack build, which needs a
// server speaking the msgpack parser). A name missing from dist/ is skipped.
var served = []string{
	"socket.io.esm.min.js",
	"socket.io.esm.min.js.map",
	"socket.io.js",
	"socket.io.js.map",
	"socket.io.min.js",
	"socket.io.min.js.map",
}

type file struct {
	name        string
	body        []byte
	sha256      string // hex
	etag        string // quoted strong ETag of the identity encoding
	etagGzip    string // quoted strong ETag of the gzip encoding
	contentType string

	gzipOnce sync.Once
	gzipBody []byte // nil when gzip does not make the body smaller
}

var (
	files   = map[string]*file{} // by base name
	version string
)

func init() {
	for _, name := range served {
		body, err := fs.ReadFile(dist, "dist/"+name)
		if err != nil {
			continue // optional file not vendored
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])
		ct := "application/javascript; charset=utf-8"
		if strings.HasSuffix(name, ".map") {
			// Source maps are JSON; this is also what the Node.js server sends.
			ct = "application/json; charset=utf-8"
		}
		files[name] = &file{
			name:        name,
			body:        body,
			sha256:      h,
			etag:        `"sha256-` + h[:32] + `"`,
			etagGzip:    `"sha256-` + h[:32] + `-gzip"`,
			contentType: ct,
		}
	}
	if b, err := fs.ReadFile(dist, "dist/VERSION"); err == nil {
		version = strings.TrimSpace(string(b))
	}
	// The build is useless without the main bundle: fail loudly at start-up
	// rather than serving 404s to every browser.
	if files["socket.io.js"] == nil || version == "" {
		panic("clientjs: dist/socket.io.js or dist/VERSION missing from the embedded files; run scripts/update-socketio-client.sh")
	}
}

// Version returns the vendored socket.io-client version (dist/VERSION), for
// logs and a health or version endpoint.
func Version() string { return version }

// Paths returns the URL paths served, e.g. "/socket.io/socket.io.js", sorted.
func Paths() []string {
	ps := make([]string, 0, len(files))
	for name := range files {
		ps = append(ps, Prefix+name)
	}
	sort.Strings(ps)
	return ps
}

// Handler returns a handler that serves the bundle files at Prefix+name. Any
// other path gets 404, so it can be mounted on exact paths (see Paths) or on
// a whole prefix. Only GET and HEAD are allowed.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := lookup(r.URL.Path)
		if f == nil {
			http.NotFound(w, r)
			return
		}
		serve(w, r, f)
	})
}

// Middleware serves the bundle files and hands every other request to next.
// Use it when next (the Socket.IO handler) owns all of Prefix, as the Node.js
// server does: the file names never collide with Engine.IO requests.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if f := lookup(r.URL.Path); f != nil {
				serve(w, r, f)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// lookup maps a URL path to a served file, or nil.
func lookup(urlPath string) *file {
	name, ok := strings.CutPrefix(urlPath, Prefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return nil
	}
	return files[name]
}

func serve(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	useGzip := acceptsGzip(r.Header.Get("Accept-Encoding")) && f.gzipped() != nil
	etag := f.etag
	if useGzip {
		etag = f.etagGzip
	}
	h.Set("Cache-Control", CacheControl)
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	// Either encoding's ETag names the same file version, so both revalidate.
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, f.etag, f.etagGzip) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if useGzip {
		body = f.gzipBody
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// gzipped compresses the file once, on first use (the Node.js server
// compresses on every request; the bundle is ~150 KB and compresses ~4x).
func (f *file) gzipped() []byte {
	f.gzipOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(f.body)
		if zw.Close() == nil && buf.Len() < len(f.body) {
			f.gzipBody = buf.Bytes()
		}
	})
	return f.gzipBody
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (explicitly or through "*"), honouring q=0.
func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = x
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}

// etagMatches implements the weak comparison of If-None-Match (RFC 9110
// 13.1.2): "*" or any listed tag equal to one of ours, ignoring "W/".
func etagMatches(header string, ours ...string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		t = strings.TrimPrefix(t, "W/")
		for _, o := range ours {
			if t == o {
				return true
			}
		}
	}
	return false
}
