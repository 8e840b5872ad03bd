package server

// Fuzz targets for every decoder and validator of client input in wire.go.
// Each checks that the function never panics and that it accepts exactly
// what its documented rule allows, against an oracle written separately
// from the code under test. Event arguments are built the way the
// Socket.IO parser builds them, by encoding/json into `any`, so that
// nesting and types are those a client can send.
//
// The seed corpus is in testdata/fuzz/<FuzzName>/. To fuzz, one target at a
// time:
//
//	go test -run '^$' -fuzz '^FuzzOutgoing$' -fuzztime 60s ./server/
//
// or scripts/fuzz.sh, which runs them all in turn.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// jsonArgs decodes data as a Socket.IO event's arguments: a JSON array is
// the argument list, any other JSON value a single argument. ok is false
// when data is not JSON.
func jsonArgs(data []byte) (args []any, ok bool) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, false
	}
	if list, isList := v.([]any); isList {
		return list, true
	}
	return []any{v}, true
}

// checkPublic fails unless err is a client-facing input error with a text.
func checkPublic(t *testing.T, what string, err error) {
	t.Helper()
	var ie errInput
	if !errors.As(err, &ie) || ie.msg == "" {
		t.Fatalf("%s: error %#v is not an input error with a message", what, err)
	}
	if got := publicMessage(err, "fallback"); got != ie.msg {
		t.Fatalf("%s: publicMessage = %q, want %q", what, got, ie.msg)
	}
}

func FuzzCredentials(f *testing.F) {
	for _, s := range []string{
		`[{"username":"eve","password":"pw"}]`,
		`{"username":"eve","password":"pw"}`,
		`[]`, `null`, `[null]`, `[42]`, `["eve"]`, `[["eve","pw"]]`,
		`[{"username":{"a":1},"password":"pw"}]`,
		`[{"username":"eve"}]`,
		`[{"username":"eve","password":123}]`,
		`[{"username":"","password":""}]`,
		`[{"username":"a b","password":"x"}]`,
		`[{"username":"\ud800","password":"\u0000"}]`,
		`[{"username":"eve","password":"pw","username":"mallory"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		args, ok := jsonArgs(data)
		if !ok {
			return
		}
		user, pw, err := credentials(args)

		var wantUser, wantPW string
		want := false
		if len(args) > 0 {
			if obj, isObj := args[0].(map[string]any); isObj {
				u, uok := obj["username"].(string)
				p, pok := obj["password"].(string)
				wantUser, wantPW, want = u, p, uok && pok
			}
		}
		if (err == nil) != want {
			t.Fatalf("credentials(%s) error = %v, want accepted: %v", data, err, want)
		}
		if err != nil {
			checkPublic(t, "credentials", err)
			if user != "" || pw != "" {
				t.Fatalf("credentials refused but returned %q, %q", user, pw)
			}
			return
		}
		if user != wantUser || pw != wantPW {
			t.Fatalf("credentials = %q, %q; want %q, %q", user, pw, wantUser, wantPW)
		}
		// Registration goes on to these two; they must cope with whatever
		// credentials let through.
		if err := validUsername(user); err != nil {
			checkPublic(t, "validUsername", err)
		}
		if err := validPassword(pw); err != nil {
			checkPublic(t, "validPassword", err)
		}
	})
}

// usernameRule is validUsername's documented rule: 1 to 64 characters,
// each a letter or a decimal digit of any script, or one of `_ . -`.
func usernameRule(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	n := 0
	for _, r := range s {
		n++
		if !unicode.In(r, unicode.L, unicode.Nd) && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return n >= 1 && n <= MaxUsernameLen
}

func FuzzValidUsername(f *testing.F) {
	for _, s := range []string{
		"eve", "", "a b", "a\x07b", "<b>x</b>", "Ünïcødé_名前.x-1",
		strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("é", 64),
		"\xff", "e\u0301", "\u202eevil", "a\u200bb", "١٢٣", "Ⅻ", "ǅ", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := validUsername(name)
		if want := usernameRule(name); (err == nil) != want {
			t.Fatalf("validUsername(%q) error = %v, want accepted: %v", name, err, want)
		}
		if err != nil {
			checkPublic(t, "validUsername", err)
		}
	})
}

func FuzzValidPassword(f *testing.F) {
	for _, s := range []string{"pw", "", strings.Repeat("p", 72), strings.Repeat("p", 73), strings.Repeat("é", 36), strings.Repeat("é", 37), "\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		err := validPassword(pw)
		// The rule counts bytes, bcrypt's unit, not characters.
		if want := len(pw) >= 1 && len(pw) <= maxPasswordBytes; (err == nil) != want {
			t.Fatalf("validPassword(%d bytes) error = %v, want accepted: %v", len(pw), err, want)
		}
		if err != nil {
			checkPublic(t, "validPassword", err)
		}
	})
}

// outgoingRule is the documented rule of `send message`: non-blank valid
// UTF-8 text of at most maxLen characters and without NUL (PostgreSQL text
// cannot hold one), then optionally null or an object whose id, if present
// and not null, is a string of 1 to 128 characters, without NUL either.
func outgoingRule(args []any, maxLen int) (text, id string, ok bool) {
	if len(args) == 0 {
		return "", "", false
	}
	s, isStr := args[0].(string)
	if !isStr || !utf8.ValidString(s) || strings.TrimFunc(s, unicode.IsSpace) == "" || utf8.RuneCountInString(s) > maxLen || strings.Contains(s, "\x00") {
		return "", "", false
	}
	if len(args) > 1 && args[1] != nil {
		opts, isObj := args[1].(map[string]any)
		if !isObj {
			return "", "", false
		}
		if raw := opts["id"]; raw != nil {
			v, isStr := raw.(string)
			if !isStr || v == "" || !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxClientIDLen || strings.Contains(v, "\x00") {
				return "", "", false
			}
			id = v
		}
	}
	return s, id, true
}

func FuzzOutgoing(f *testing.F) {
	for _, s := range []string{
		`["hello"]`, `["hello",{"id":"c1"}]`, `["hello",null]`, `["hello",{}]`, `["hello",{"id":null}]`,
		`[]`, `[null]`, `[42]`, `[{"msg":"x"}]`, `[["x"]]`, `[""]`, `["   \t\n"]`, `["\u00a0\u3000"]`,
		`["hi","id"]`, `["hi",{"id":""}]`, `["hi",{"id":7}]`, `["hi",{"id":["a"]}]`,
		`["\ud800"]`, `"bare string"`, `["hi",{"id":"` + strings.Repeat("i", 129) + `"}]`,
	} {
		f.Add([]byte(s), uint16(1999))
	}
	f.Add([]byte(`["héllo"]`), uint16(4))
	f.Add([]byte(`["héllo"]`), uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		maxLen := 1 + int(max)%4096
		check := func(what string, args []any) {
			t.Helper()
			text, id, err := outgoing(args, maxLen)
			wantText, wantID, want := outgoingRule(args, maxLen)
			if (err == nil) != want {
				t.Fatalf("%s: outgoing(max %d) error = %v, want accepted: %v", what, maxLen, err, want)
			}
			if err != nil {
				checkPublic(t, "outgoing", err)
				return
			}
			if text != wantText || id != wantID {
				t.Fatalf("%s: outgoing = %q, %q; want %q, %q", what, text, id, wantText, wantID)
			}
		}
		if args, ok := jsonArgs(data); ok {
			check("JSON arguments", args)
		}
		// The Socket.IO parser's JSON decoding replaces invalid UTF-8; a
		// binary attachment or another parser would not.
		raw := string(data)
		check("raw text", []any{raw})
		check("raw text and id", []any{"x", map[string]any{"id": raw}})
		check("binary attachment", []any{data})
	})
}

func FuzzLogName(f *testing.F) {
	for _, s := range []string{
		"", "eve", strings.Repeat("a", 80), strings.Repeat("a", 81), strings.Repeat("é", 41),
		strings.Repeat("a", 79) + "名前", strings.Repeat("\x80", 200), strings.Repeat("\xff", 100), strings.Repeat("😀", 30),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := logName(name)
		if len(name) <= 80 {
			if got != name {
				t.Fatalf("logName(%q) = %q, want it unchanged", name, got)
			}
			return
		}
		suffix := "…(" + strconv.Itoa(len(name)) + " bytes)"
		prefix, found := strings.CutSuffix(got, suffix)
		if !found {
			t.Fatalf("logName(%d bytes) = %q, want it to end in %q", len(name), got, suffix)
		}
		if !strings.HasPrefix(name, prefix) || len(prefix) > 80 {
			t.Fatalf("logName(%d bytes) kept %q, want a prefix of the name of at most 80 bytes", len(name), prefix)
		}
		// The bound holds for names under 100 MB (9-digit lengths); a
		// socket's input is bounded far below that.
		if len(got) > 100 && len(name) < 1e8 {
			t.Fatalf("logName(%d bytes) is %d bytes long, want ≤ 100", len(name), len(got))
		}
		if utf8.ValidString(name) {
			if !utf8.ValidString(got) {
				t.Fatalf("logName of valid UTF-8 = %q, not valid UTF-8", got)
			}
			// Only a cut character is dropped: at most 3 bytes.
			if len(prefix) < 77 {
				t.Fatalf("logName(%d bytes) kept only %d bytes", len(name), len(prefix))
			}
		}
	})
}

// pageRule is the documented rule of `load older messages`: an object
// whose before is a whole number from 1 to 2^53 and whose limit, if
// present and not null, is a whole number from 1 to 100 (default 50).
func pageRule(args []any) (before int64, limit int, ok bool) {
	if len(args) == 0 {
		return 0, 0, false
	}
	obj, isObj := args[0].(map[string]any)
	if !isObj {
		return 0, 0, false
	}
	whole := func(v any, lo, hi float64) (float64, bool) {
		x, isNum := v.(float64)
		if !isNum || math.IsNaN(x) || x < lo || x > hi || math.Trunc(x) != x {
			return 0, false
		}
		return x, true
	}
	b, okB := whole(obj["before"], 1, 1<<53)
	if !okB {
		return 0, 0, false
	}
	limit = defaultPage
	if raw := obj["limit"]; raw != nil {
		l, okL := whole(raw, 1, maxPage)
		if !okL {
			return 0, 0, false
		}
		limit = int(l)
	}
	// Beyond every possible id (PostgreSQL's serial): from the newest.
	return min(int64(b), maxMessageID), limit, true
}

func FuzzPageArgs(f *testing.F) {
	for _, s := range []string{
		`[{"before":100}]`, `[{"before":100,"limit":20}]`, `[{"before":100,"limit":null}]`,
		`[{"before":1,"limit":100}]`, `[{"before":0}]`, `[{"before":-5}]`, `[{"before":1.5}]`,
		`[{"before":9007199254740992}]`, `[{"before":9007199254740993}]`, `[{"before":1e300}]`,
		`[{"before":"100"}]`, `[{"before":100,"limit":101}]`, `[{"before":100,"limit":0}]`,
		`[{"before":100,"limit":2.5}]`, `[{"before":100,"limit":"5"}]`, `[]`, `[null]`, `[[100]]`, `{"before":5}`,
	} {
		f.Add([]byte(s), 100.0, 20.0)
	}
	f.Add([]byte(`[]`), math.NaN(), math.Inf(1))
	f.Add([]byte(`[]`), math.Inf(-1), math.NaN())
	f.Add([]byte(`[]`), float64(1<<63), -0.0)
	f.Add([]byte(`[]`), math.MaxFloat64, math.SmallestNonzeroFloat64)
	f.Fuzz(func(t *testing.T, data []byte, before, limit float64) {
		check := func(what string, args []any) {
			t.Helper()
			b, l, err := pageArgs(args)
			wantB, wantL, want := pageRule(args)
			if (err == nil) != want {
				t.Fatalf("%s: pageArgs error = %v, want accepted: %v", what, err, want)
			}
			if err != nil {
				checkPublic(t, "pageArgs", err)
				return
			}
			if b != wantB || l != wantL {
				t.Fatalf("%s: pageArgs = %d, %d; want %d, %d", what, b, l, wantB, wantL)
			}
			if b < 1 || l < 1 || l > maxPage {
				t.Fatalf("%s: pageArgs accepted before %d, limit %d", what, b, l)
			}
		}
		if args, ok := jsonArgs(data); ok {
			check("JSON arguments", args)
		}
		// Numbers JSON cannot carry (NaN, ±Inf) reach pageArgs only from
		// another parser, but it must not care.
		check("numbers", []any{map[string]any{"before": before, "limit": limit}})
		check("before only", []any{map[string]any{"before": before}})
	})
}

func FuzzAuthToken(f *testing.F) {
	for _, s := range []string{
		`{"token":"abc"}`, `{"token":""}`, `{"token":null}`, `{"token":42}`, `{"token":["abc"]}`,
		`{}`, `null`, `[]`, `"token"`, `{"token":"` + strings.Repeat("t", 256) + `"}`,
		`{"token":"` + strings.Repeat("t", 257) + `"}`, `{"token":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, auth map[string]any) {
			t.Helper()
			tok, ok := authToken(auth)
			want, isStr := auth["token"].(string)
			wantOK := isStr && len(want) >= 1 && len(want) <= 256
			if ok != wantOK {
				t.Fatalf("%s: authToken ok = %v, want %v", what, ok, wantOK)
			}
			if !ok {
				if tok != "" {
					t.Fatalf("%s: authToken refused but returned %q", what, tok)
				}
				return
			}
			if tok != want {
				t.Fatalf("%s: authToken = %q, want %q", what, tok, want)
			}
			h := hashToken(tok)
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || h != strings.ToLower(h) {
				t.Fatalf("%s: hashToken = %q, want 64 lowercase hex digits", what, h)
			}
			if hashToken(tok) != h {
				t.Fatalf("%s: hashToken is not deterministic", what)
			}
		}
		var v any
		if json.Unmarshal(data, &v) == nil {
			obj, _ := v.(map[string]any) // a non-object is no auth at all
			check("JSON auth", obj)
		}
		check("raw token", map[string]any{"token": string(data)})
	})
}
