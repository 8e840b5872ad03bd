package socketio

// Binary arguments travel as attachments: the JSON carries
// {"_placeholder":true,"num":N} where the N-th binary message after it goes.
// Only []byte inside the JSON-shaped values encoding/json decodes to
// ([]any, map[string]any) is looked for, with a type switch: a []byte
// inside a struct is left to encoding/json, which writes it as base64.

// hasBinary reports whether v holds a []byte where deconstruct finds it.
func hasBinary(v any) bool {
	switch x := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	}
	return false
}

// deconstruct returns args with every []byte replaced by a placeholder, and
// the attachments in placeholder order. Containers holding binary are
// copied; the caller's values are not changed.
func deconstruct(args []any) ([]any, [][]byte) {
	var atts [][]byte
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case []byte:
			atts = append(atts, x)
			return map[string]any{"_placeholder": true, "num": len(atts) - 1}
		case []any:
			if !hasBinary(x) {
				return x
			}
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e)
			}
			return out
		case map[string]any:
			if !hasBinary(x) {
				return x
			}
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = walk(e)
			}
			return out
		}
		return v
	}
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = walk(a)
	}
	return out, atts
}

// reconstruct puts the attachments back where their placeholders are, in
// place. A placeholder whose num is not the index of an attachment is an
// error, as in Node's parser.
func reconstruct(args []any, atts [][]byte) error {
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch x := v.(type) {
		case []any:
			for i, e := range x {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				x[i] = r
			}
		case map[string]any:
			if p, _ := x["_placeholder"].(bool); p {
				num, ok := x["num"].(float64)
				if !ok || num < 0 || num >= float64(len(atts)) || num != float64(int(num)) {
					return nil, errPlaceholder
				}
				return atts[int(num)], nil
			}
			for k, e := range x {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				x[k] = r
			}
		}
		return v, nil
	}
	for i, a := range args {
		r, err := walk(a)
		if err != nil {
			return err
		}
		args[i] = r
	}
	return nil
}
