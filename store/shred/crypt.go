package shred

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/troupehq/troupe/store"
)

// EncryptedKey is the one key of the JSON object that replaces an
// encrypted value in a stored event:
//
//	{"troupe:encrypted": {"s": "<subject>", "v": <key version>, "k": "<JSON kind>", "d": "<base64 nonce and ciphertext>"}}
//
// The object names everything needed to decrypt it, so a reader needs no
// knowledge of the event's type, and an upcaster that moves the value
// elsewhere in the event moves it whole. Appends through the wrapper
// refuse event bodies that already contain this key.
const EncryptedKey = "troupe:encrypted"

// MetaRedacted is the metadata key of an event read with personal values
// that could not be decrypted because their subject was forgotten: the
// JSON paths of the redacted values ("email", "address.street",
// "lines[2].name"), as a list of strings. An event without it had nothing
// redacted.
const MetaRedacted = "redacted"

var markerBytes = []byte(strconv.Quote(EncryptedKey))

// Redacted values: the JSON zero value of the encrypted value's kind.
var redactedByKind = map[string]json.RawMessage{
	kindString:  json.RawMessage(`""`),
	kindNumber:  json.RawMessage(`0`),
	kindBoolean: json.RawMessage(`false`),
	kindObject:  json.RawMessage(`null`),
	kindArray:   json.RawMessage(`null`),
	kindNull:    json.RawMessage(`null`),
}

const (
	kindString  = "string"
	kindNumber  = "number"
	kindBoolean = "boolean"
	kindObject  = "object"
	kindArray   = "array"
	kindNull    = "null"
)

// sealed is the content of an encrypted value.
type sealed struct {
	Subject string `json:"s"`
	Version int    `json:"v"`
	Kind    string `json:"k"`
	Data    []byte `json:"d"`
}

func kindOf(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return kindNull
	}
	switch raw[0] {
	case '"':
		return kindString
	case '{':
		return kindObject
	case '[':
		return kindArray
	case 't', 'f':
		return kindBoolean
	case 'n':
		return kindNull
	}
	return kindNumber
}

// additionalData binds a ciphertext to its subject and key version.
func additionalData(partition, subject string, version int) []byte {
	return []byte(EncryptedKey + "\x00" + partition + "\x00" + subject + "\x00" + strconv.Itoa(version))
}

// newAEAD returns AES-GCM with secret.
func newAEAD(secret []byte) (cipher.AEAD, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(secret), KeySize)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts one value with a random nonce.
func seal(aead cipher.AEAD, partition, subject string, version int, value json.RawMessage) (json.RawMessage, error) {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(value)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	data := aead.Seal(nonce, nonce, value, additionalData(partition, subject, version))
	return json.Marshal(map[string]sealed{EncryptedKey: {Subject: subject, Version: version, Kind: kindOf(value), Data: data}})
}

// open decrypts one value.
func open(aead cipher.AEAD, partition string, s sealed) (json.RawMessage, error) {
	n := aead.NonceSize()
	if len(s.Data) < n+aead.Overhead() {
		return nil, errors.New("ciphertext too short")
	}
	return aead.Open(nil, s.Data[:n], s.Data[n:], additionalData(partition, s.Subject, s.Version))
}

// visitFunc is called for each encrypted value found by walk, with its
// path; a non-nil result replaces the value.
type visitFunc func(path string, s sealed) (json.RawMessage, error)

// walk finds the encrypted values of the JSON document raw and returns
// the document with the replacements fn made, and whether it made any.
func walk(raw json.RawMessage, path string, fn visitFunc) (json.RawMessage, bool, error) {
	if !bytes.Contains(raw, markerBytes) {
		return raw, false, nil
	}
	switch kindOf(raw) {
	case kindObject:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, false, err
		}
		if inner, ok := obj[EncryptedKey]; ok && len(obj) == 1 {
			var s sealed
			if err := json.Unmarshal(inner, &s); err != nil || s.Subject == "" {
				return nil, false, fmt.Errorf("value at %q is a malformed encrypted value", pathOrRoot(path))
			}
			out, err := fn(path, s)
			return out, out != nil, err
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		changed := false
		for _, k := range keys {
			v, c, err := walk(obj[k], join(path, k), fn)
			if err != nil {
				return nil, false, err
			}
			if c {
				obj[k], changed = v, true
			}
		}
		if !changed {
			return raw, false, nil
		}
		out, err := json.Marshal(obj)
		return out, true, err
	case kindArray:
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, false, err
		}
		changed := false
		for i, v := range arr {
			nv, c, err := walk(v, path+"["+strconv.Itoa(i)+"]", fn)
			if err != nil {
				return nil, false, err
			}
			if c {
				arr[i], changed = nv, true
			}
		}
		if !changed {
			return raw, false, nil
		}
		out, err := json.Marshal(arr)
		return out, true, err
	}
	return raw, false, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func pathOrRoot(path string) string {
	if path == "" {
		return "(the event body)"
	}
	return path
}

// subjectOf returns the text of a subject field's JSON value: a string,
// or a number's literal. Anything else (absent, null, "", an object) is
// no subject.
func subjectOf(raw json.RawMessage) (string, bool) {
	switch kindOf(raw) {
	case kindString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return "", false
		}
		return s, true
	case kindNumber:
		return string(bytes.TrimSpace(raw)), true
	}
	return "", false
}

// ErrSubjectForgotten matches an append refused because it carries
// personal values of a forgotten data subject (the error also matches
// store.ErrInvalidArgument: nothing was written).
var ErrSubjectForgotten = errors.New("the data subject was forgotten")

// ErrKeyMissing matches a read that found a value encrypted for a data
// subject that has no key and was not forgotten (its key row was deleted
// by other means than Forget): a *KeyMissingError.
var ErrKeyMissing = errors.New("the key of a data subject that was not forgotten is missing")

// ErrUndecryptable matches a read that found an encrypted value its
// subject's key does not open (the key was replaced, or the value
// altered).
var ErrUndecryptable = errors.New("an encrypted value does not decrypt")

// KeyMissingError names an event holding values encrypted for a subject
// whose key is missing. errors.Is(err, ErrKeyMissing) matches it. The read
// that met it returns no events.
type KeyMissingError struct {
	Type      string
	Stream    store.StreamID
	Partition string
	Position  store.Version
	Subject   string
	// Path is the JSON path of the first value of the event encrypted
	// for Subject.
	Path string
}

func (e *KeyMissingError) Error() string {
	return fmt.Sprintf("event %s at position %d of stream %q in partition %q: the value at %q is encrypted for data subject %q, which has no key and was not forgotten (was its key row deleted by hand?)",
		e.Type, e.Position, e.Stream, e.Partition, e.Path, e.Subject)
}

// Is reports whether target is ErrKeyMissing.
func (e *KeyMissingError) Is(target error) bool { return target == ErrKeyMissing }

// subjectsIn returns the subjects named by the encrypted values of the
// JSON document data without parsing all of it: after each occurrence of
// EncryptedKey followed by a colon, the first "s" token is the subject's
// key (the other members of an encrypted value hold no quote: base64, a
// kind, a number), and the string after it the subject. It is a hint: a
// subject it misses is looked up when the value is met (decrypt).
func subjectsIn(data []byte) []string {
	var out []string
	for off := 0; ; {
		i := bytes.Index(data[off:], markerBytes)
		if i < 0 {
			return out
		}
		off += i + len(markerBytes)
		rest := bytes.TrimLeft(data[off:], " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		j := bytes.Index(rest, subjectKeyBytes)
		if j < 0 {
			return out
		}
		rest = bytes.TrimLeft(rest[j+len(subjectKeyBytes):], " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if end := stringEnd(rest); end > 0 {
			var id string
			if json.Unmarshal(rest[:end], &id) == nil && id != "" {
				out = append(out, id)
			}
		}
	}
}

var subjectKeyBytes = []byte(`"s"`)

// stringEnd returns the length of the JSON string literal b starts with,
// or 0 when it does not start with a complete one.
func stringEnd(b []byte) int {
	if len(b) == 0 || b[0] != '"' {
		return 0
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return 0
}
