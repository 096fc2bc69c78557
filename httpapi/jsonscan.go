package httpapi

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/revenueguard/revguard"
)

// objectDecoder reads one flat JSON object strictly, field by field, without reflection
// and without allocating for numbers, booleans and keys. It knows the object's field names
// up front, so an unknown key, a repeated key (which encoding/json silently accepts, the
// last one winning) and anything after the closing brace are refused. Every request body
// of the API is a flat object of scalars, so nested values are always a type error.
//
// Use:
//
//	d := objectDecoder{data: body, fields: names}
//	for f := d.next(); f >= 0; f = d.next() {
//		switch f { case 0: q = d.int("quantity") ... }
//	}
//	if d.err != nil { ... }
//
// Every failure is a *revguard.Error with CodeInvalidRequest and a detail that says what
// is wrong and where.
type objectDecoder struct {
	data    []byte
	pos     int
	fields  []string // the known keys; at most 64
	seen    uint64   // bit i: fields[i] was read
	state   uint8    // 0 before '{', 1 inside, 2 done
	err     error
	scratch []byte // unescaped strings
}

// next advances to the next key and returns its index in fields, or -1 at the end of the
// object or on error (then d.err is set). The caller must read the value with exactly one
// of the value methods before calling next again.
func (d *objectDecoder) next() int {
	if d.err != nil || d.state == 2 {
		return -1
	}
	d.skipSpace()
	if d.state == 0 {
		if d.pos >= len(d.data) {
			d.fail("request body is empty; expected a JSON object")
			return -1
		}
		if d.data[d.pos] != '{' {
			d.fail("request body must be a JSON object")
			return -1
		}
		d.pos++
		d.state = 1
		d.skipSpace()
		if d.pos < len(d.data) && d.data[d.pos] == '}' {
			d.pos++
			return d.end()
		}
	} else {
		if d.pos >= len(d.data) {
			d.syntax("unexpected end of input")
			return -1
		}
		switch d.data[d.pos] {
		case '}':
			d.pos++
			return d.end()
		case ',':
			d.pos++
			d.skipSpace()
		default:
			d.syntax("expected ',' or '}' after a value")
			return -1
		}
	}
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		d.syntax("expected a string key")
		return -1
	}
	key, ok := d.readString()
	if !ok {
		return -1
	}
	field := -1
	for i, name := range d.fields {
		if string(key) == name {
			field = i
			break
		}
	}
	if field < 0 {
		d.err = revguard.Errorf(revguard.CodeInvalidRequest, "unknown field %s", quoteForDetail(key))
		return -1
	}
	if d.seen&(1<<field) != 0 {
		d.err = revguard.Errorf(revguard.CodeInvalidRequest, "duplicate field %q", d.fields[field])
		return -1
	}
	d.seen |= 1 << field
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		d.syntax("expected ':' after a key")
		return -1
	}
	d.pos++
	d.skipSpace()
	if d.pos >= len(d.data) {
		d.syntax("unexpected end of input")
		return -1
	}
	return field
}

// end finishes the object: only whitespace may follow it.
func (d *objectDecoder) end() int {
	d.state = 2
	d.skipSpace()
	if d.pos < len(d.data) {
		d.fail("unexpected data after the JSON object at byte " + strconv.Itoa(d.pos))
	}
	return -1
}

// has reports whether the field with index i was present.
func (d *objectDecoder) has(i int) bool { return d.seen&(1<<i) != 0 }

// null consumes a JSON null and reports whether there was one.
func (d *objectDecoder) null() bool {
	if d.err == nil && d.literal("null") {
		return true
	}
	return false
}

// int reads an integer value of the field name.
func (d *objectDecoder) int(name string) int64 {
	if d.err != nil {
		return 0
	}
	start := d.pos
	c := d.data[d.pos]
	if c != '-' && (c < '0' || c > '9') {
		d.wrongType(name, "an integer")
		return 0
	}
	integer, ok := d.scanNumber()
	if !ok {
		return 0
	}
	if !integer {
		d.err = revguard.Errorf(revguard.CodeInvalidRequest, "%s must be an integer", name)
		return 0
	}
	n, err := strconv.ParseInt(string(d.data[start:d.pos]), 10, 64)
	if err != nil {
		d.err = revguard.Errorf(revguard.CodeInvalidRequest, "%s is out of range", name)
		return 0
	}
	return n
}

// str reads a string value of the field name.
func (d *objectDecoder) str(name string) string {
	if d.err != nil {
		return ""
	}
	if d.data[d.pos] != '"' {
		d.wrongType(name, "a string")
		return ""
	}
	b, ok := d.readString()
	if !ok {
		return ""
	}
	return string(b)
}

// bool reads a boolean value of the field name.
func (d *objectDecoder) bool(name string) bool {
	if d.err != nil {
		return false
	}
	switch d.data[d.pos] {
	case 't':
		if d.literal("true") {
			return true
		}
	case 'f':
		if d.literal("false") {
			return false
		}
	default:
		d.wrongType(name, "a boolean")
		return false
	}
	d.syntax("invalid literal")
	return false
}

func (d *objectDecoder) literal(lit string) bool {
	if len(d.data)-d.pos >= len(lit) && string(d.data[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return true
	}
	return false
}

func (d *objectDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// scanNumber consumes a JSON number (RFC 8259 grammar) and reports whether it was an
// integer (no fraction, no exponent).
func (d *objectDecoder) scanNumber() (integer, ok bool) {
	p := d.pos
	data := d.data
	digits := func() int {
		n := 0
		for p < len(data) && data[p] >= '0' && data[p] <= '9' {
			p++
			n++
		}
		return n
	}
	if data[p] == '-' {
		p++
	}
	switch {
	case p < len(data) && data[p] == '0':
		p++
	case p < len(data) && data[p] >= '1' && data[p] <= '9':
		digits()
	default:
		d.pos = p
		d.syntax("invalid number")
		return false, false
	}
	integer = true
	if p < len(data) && data[p] == '.' {
		p++
		if digits() == 0 {
			d.pos = p
			d.syntax("invalid number")
			return false, false
		}
		integer = false
	}
	if p < len(data) && (data[p] == 'e' || data[p] == 'E') {
		p++
		if p < len(data) && (data[p] == '+' || data[p] == '-') {
			p++
		}
		if digits() == 0 {
			d.pos = p
			d.syntax("invalid number")
			return false, false
		}
		integer = false
	}
	d.pos = p
	return integer, true
}

// readString consumes the JSON string at d.pos and returns its unescaped bytes, which
// are valid only until the next call. Raw control characters, bad escapes, unpaired
// surrogates and invalid UTF-8 are refused (RFC 7493, I-JSON).
func (d *objectDecoder) readString() ([]byte, bool) {
	p := d.pos + 1 // past the quote
	start := p
	ascii := true
	for p < len(d.data) {
		c := d.data[p]
		switch {
		case c == '"':
			s := d.data[start:p]
			if !ascii && !utf8.Valid(s) {
				d.pos = start
				d.fail("string is not valid UTF-8")
				return nil, false
			}
			d.pos = p + 1
			return s, true
		case c == '\\':
			return d.readEscapedString(start)
		case c < 0x20:
			d.pos = p
			d.syntax("control character in string")
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		p++
	}
	d.pos = p
	d.syntax("unterminated string")
	return nil, false
}

// readEscapedString is the slow path of readString for strings with escapes.
func (d *objectDecoder) readEscapedString(start int) ([]byte, bool) {
	out := d.scratch[:0]
	p := start
	for p < len(d.data) {
		c := d.data[p]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				d.pos = start
				d.fail("string is not valid UTF-8")
				return nil, false
			}
			d.scratch = out
			d.pos = p + 1
			return out, true
		case c < 0x20:
			d.pos = p
			d.syntax("control character in string")
			return nil, false
		case c != '\\':
			out = append(out, c)
			p++
			continue
		}
		// An escape.
		if p+1 >= len(d.data) {
			break
		}
		e := d.data[p+1]
		p += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(d.data, p)
			if !ok {
				d.pos = p
				d.syntax("invalid \\u escape")
				return nil, false
			}
			p += 4
			if utf16.IsSurrogate(r) {
				var r2 rune = -1
				if p+1 < len(d.data) && d.data[p] == '\\' && d.data[p+1] == 'u' {
					r2, ok = hex4(d.data, p+2)
					if !ok {
						r2 = -1
					}
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					d.pos = p
					d.fail("string has an unpaired UTF-16 surrogate")
					return nil, false
				}
				p += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			d.pos = p - 1
			d.syntax("invalid escape in string")
			return nil, false
		}
	}
	d.pos = p
	d.syntax("unterminated string")
	return nil, false
}

func hex4(b []byte, p int) (rune, bool) {
	if p+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[p : p+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (d *objectDecoder) wrongType(name, want string) {
	got := "a value of another type"
	switch d.data[d.pos] {
	case '"':
		got = "a string"
	case '{':
		got = "an object"
	case '[':
		got = "an array"
	case 't', 'f':
		got = "a boolean"
	case 'n':
		got = "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		got = "a number"
	default:
		d.syntax("invalid value")
		return
	}
	d.err = revguard.Errorf(revguard.CodeInvalidRequest, "%s must be %s, not %s", name, want, got)
}

func (d *objectDecoder) syntax(msg string) {
	d.fail("invalid JSON at byte " + strconv.Itoa(d.pos) + ": " + msg)
}

func (d *objectDecoder) fail(detail string) {
	if d.err == nil {
		d.err = &revguard.Error{Code: revguard.CodeInvalidRequest, Detail: detail}
	}
}

// quoteForDetail quotes a client-supplied name for an error detail, cut to 64 bytes so
// that a huge key cannot bloat the answer.
func quoteForDetail(b []byte) string {
	const max = 64
	if len(b) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "..."
	}
	return strconv.Quote(string(b))
}

// strs reads an array of at most max strings as the value of the field name.
func (d *objectDecoder) strs(name string, max int) []string {
	if d.err != nil {
		return nil
	}
	if d.data[d.pos] != '[' {
		d.wrongType(name, "an array of strings")
		return nil
	}
	d.pos++
	out := []string{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return out
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) {
			d.syntax("unexpected end of input")
			return nil
		}
		if d.data[d.pos] != '"' {
			d.wrongType(name+"'s items", "strings")
			return nil
		}
		b, ok := d.readString()
		if !ok {
			return nil
		}
		if len(out) == max {
			d.fail(name + " has more than " + strconv.Itoa(max) + " items")
			return nil
		}
		out = append(out, string(b))
		d.skipSpace()
		if d.pos >= len(d.data) {
			d.syntax("unexpected end of input")
			return nil
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return out
		default:
			d.syntax("expected , or ] in an array")
			return nil
		}
	}
}
