package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatd/chat/store"
)

// Acknowledgement texts. The first four are the seed's, word for word:
// clients written for the Node server compare them.
const (
	msgUsernameTaken   = "Username already taken"
	msgRegisterError   = "Error registering user"
	msgInvalidLogin    = "Invalid username or password"
	msgNotLoggedIn     = "No user is currently logged in."
	msgUnavailable     = "Service temporarily unavailable, please try again"
	msgBadCredentials  = "Expected {username, password} with both as text"
	msgPasswordEmpty   = "Password must not be empty"
	msgPasswordTooLong = "Password must be at most 72 bytes (bcrypt's limit)"
	msgSendNotLoggedIn = "Not logged in"
	msgMessageNotText  = "Message must be text"
	msgMessageEmpty    = "Message must not be empty"
	msgMessageNUL      = "Message must not contain the NUL character"
	msgBadClientID     = "Message id must be a string of 1 to 128 characters"
	msgSessionExpired  = "Session expired, please log in again"
	msgBadPage         = "Expected {before: message id, limit: 1 to 100}"
	msgTooManyAttempts = "Too many attempts, please wait a minute and try again"
	msgTooFast         = "You are sending messages too fast; please slow down"
	msgTooFastPages    = "You are loading history too fast; please wait a moment"
)

// Limits on client input.
const (
	// MaxUsernameLen is the longest username, in characters, that
	// registration accepts.
	MaxUsernameLen = 64
	// maxPasswordBytes is bcrypt's input limit; longer passwords would be
	// silently truncated by the hash, so registration refuses them.
	maxPasswordBytes = 72
	// maxClientIDLen bounds the idempotency key of `send message`.
	maxClientIDLen = 128
)

// wireMessage is a message as clients receive it: the seed's {msg, user}
// plus the id and time extensions.
type wireMessage struct {
	Msg  string `json:"msg"`
	User string `json:"user"`
	ID   int64  `json:"id"`
	Time string `json:"time"`
	// Edited is when the author last changed the text, left out if never.
	Edited string `json:"edited,omitempty"`
}

func wireMsg(m store.Message) wireMessage {
	w := wireMessage{Msg: m.Content, User: m.Username, ID: m.ID, Time: wireTime(m.Time)}
	if !m.Edited.IsZero() {
		w.Edited = wireTime(m.Edited)
	}
	return w
}

func wireTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// visible returns ms without its deleted messages, for the seed's events
// (`load all messages`, `load older messages`): a seed client knows no
// deleted marker and would show an empty line from the author, so for it a
// deleted message is simply gone. The ids still count as given (goLive and
// givePage see the whole list), so nothing is sent twice.
func visible(ms []store.Message) []store.Message {
	n := 0
	for _, m := range ms {
		if !m.Deleted {
			n++
		}
	}
	if n == len(ms) {
		return ms
	}
	out := make([]store.Message, 0, n)
	for _, m := range ms {
		if !m.Deleted {
			out = append(out, m)
		}
	}
	return out
}

func wireMsgs(ms []store.Message) []wireMessage {
	out := make([]wireMessage, len(ms))
	for i, m := range ms {
		out[i] = wireMsg(m)
	}
	return out
}

// reply adapts a Socket.IO acknowledgement to the chat's one-object
// answers; an event sent without one gets a reply that goes nowhere.
func reply(ack func(...any)) func(any) {
	if ack == nil {
		return func(any) {}
	}
	return func(v any) { ack(v) }
}

func ok(extra ...any) map[string]any {
	m := map[string]any{"success": true}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func fail(message string) map[string]any {
	return map[string]any{"success": false, "message": message}
}

// errInput is a client mistake; its text is safe to send back.
type errInput struct{ msg string }

func (e errInput) Error() string { return e.msg }

func inputErr(msg string) error { return errInput{msg} }

// publicMessage returns the text for a client: the input error's own, or
// fallback for anything else, so that no internal error reaches a socket.
func publicMessage(err error, fallback string) string {
	var ie errInput
	if errors.As(err, &ie) {
		return ie.msg
	}
	return fallback
}

// credentials reads the {username, password} payload of register and login.
func credentials(args []any) (username, password string, err error) {
	if len(args) == 0 {
		return "", "", inputErr(msgBadCredentials)
	}
	obj, isObj := args[0].(map[string]any)
	if !isObj {
		return "", "", inputErr(msgBadCredentials)
	}
	username, uok := obj["username"].(string)
	password, pok := obj["password"].(string)
	if !uok || !pok {
		return "", "", inputErr(msgBadCredentials)
	}
	return username, password, nil
}

// validUsername is the rule for new registrations: 1 to 64 characters,
// each a letter or digit (any script) or one of `_ . -`. Login accepts any
// name that exists, whatever its shape, since the Node server had no rule.
func validUsername(name string) error {
	if name == "" {
		return inputErr("Username must not be empty")
	}
	if !utf8.ValidString(name) {
		return inputErr("Username must be valid UTF-8 text")
	}
	if n := utf8.RuneCountInString(name); n > MaxUsernameLen {
		return inputErr(fmt.Sprintf("Username must be at most %d characters", MaxUsernameLen))
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '.' && r != '-' {
			return inputErr("Username may contain only letters, digits, '_', '.' and '-'")
		}
	}
	return nil
}

// validPassword is the rule for new passwords.
func validPassword(pw string) error {
	if pw == "" {
		return inputErr(msgPasswordEmpty)
	}
	if len(pw) > maxPasswordBytes {
		return inputErr(msgPasswordTooLong)
	}
	return nil
}

// outgoing reads `send message`'s arguments: the seed's text, and the
// optional {id} extension that makes a resend idempotent.
func outgoing(args []any, maxLen int) (text, clientID string, err error) {
	if len(args) == 0 {
		return "", "", inputErr(msgMessageNotText)
	}
	text, isText := args[0].(string)
	if !isText {
		return "", "", inputErr(msgMessageNotText)
	}
	if err := checkText(text, maxLen); err != nil {
		return "", "", err
	}
	if len(args) > 1 && args[1] != nil {
		opts, isObj := args[1].(map[string]any)
		if !isObj {
			return "", "", inputErr(msgBadClientID)
		}
		if clientID, err = clientIDOf(opts); err != nil {
			return "", "", err
		}
	}
	return text, clientID, nil
}

// checkText is the rule for a message's text, sent or edited: valid
// UTF-8 without NUL, not blank, at most maxLen characters. PostgreSQL
// text cannot hold NUL: such a message would fail in the store as if the
// database were down, and a client would resend it for ever.
func checkText(text string, maxLen int) error {
	if !utf8.ValidString(text) {
		return inputErr("Message must be valid UTF-8 text")
	}
	if strings.IndexByte(text, 0) >= 0 {
		return inputErr(msgMessageNUL)
	}
	if isBlank(text) {
		return inputErr(msgMessageEmpty)
	}
	if n := utf8.RuneCountInString(text); n > maxLen {
		return inputErr(fmt.Sprintf("Message is %d characters; the limit is %d", n, maxLen))
	}
	return nil
}

// clientIDOf reads the optional resend key `id` of obj: absent or null is
// none, anything but a string of 1 to 128 characters is refused, and so
// is a NUL in it (PostgreSQL text cannot hold one).
func clientIDOf(obj map[string]any) (string, error) {
	raw, has := obj["id"]
	if !has || raw == nil {
		return "", nil
	}
	id, isStr := raw.(string)
	if !isStr || id == "" || utf8.RuneCountInString(id) > maxClientIDLen || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return "", inputErr(msgBadClientID)
	}
	return id, nil
}

func isBlank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// logName shortens a client-chosen name for the log, so that a 100 KB
// username costs one short line, not 100 KB of log.
func logName(name string) string {
	const max = 80
	if len(name) <= max {
		return name
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", name[:cut], len(name))
}

// newToken returns a fresh session token and the hash under which it is
// stored. The token is 256 random bits; only its SHA-256 reaches the
// database, so a leaked table cannot be used to log in.
func newToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token), nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// authToken reads the token from a handshake's auth payload. Anything but a
// string of a plausible size is no token.
func authToken(auth map[string]any) (string, bool) {
	t, ok := auth["token"].(string)
	if !ok || t == "" || len(t) > 256 {
		return "", false
	}
	return t, true
}

// Paging limits of `load older messages`.
const (
	defaultPage = 50
	maxPage     = 100
)

// pageArgs reads {before, limit} of `load older messages`. JSON numbers
// arrive as float64; only whole, positive values are accepted.
func pageArgs(args []any) (before int64, limit int, err error) {
	if len(args) == 0 {
		return 0, 0, inputErr(msgBadPage)
	}
	obj, isObj := args[0].(map[string]any)
	if !isObj {
		return 0, 0, inputErr(msgBadPage)
	}
	b, isNum := obj["before"].(float64)
	if !isNum || b < 1 || b > 1<<53 || b != float64(int64(b)) {
		return 0, 0, inputErr(msgBadPage)
	}
	limit = defaultPage
	if raw, has := obj["limit"]; has && raw != nil {
		l, isNum := raw.(float64)
		if !isNum || l < 1 || l > maxPage || l != float64(int(l)) {
			return 0, 0, inputErr(msgBadPage)
		}
		limit = int(l)
	}
	// Above every possible id (see maxMessageID) means "from the newest".
	return min(int64(b), maxMessageID), limit, nil
}
