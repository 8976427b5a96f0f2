package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/troupehq/troupe/examples/cart/cart"
)

// The request bodies. Pointer fields tell a missing (or null) field from
// a zero value; decoding refuses unknown fields.

type createTenantBody struct {
	TenantID *string `json:"tenantId"`
	Name     *string `json:"name"`
}

type createCartBody struct {
	Currency *string `json:"currency"`
}

type itemBody struct {
	SKU       *string         `json:"sku"`
	Name      *string         `json:"name"`
	UnitPrice json.RawMessage `json:"unitPrice"`
	Quantity  *int            `json:"quantity"`
}

type itemsBody struct {
	Action   *string   `json:"action"`
	Item     *itemBody `json:"item"`
	SKU      *string   `json:"sku"`
	Quantity *int      `json:"quantity"`
}

// checkoutBody is optional. The seed's clients send {"orderId", "total"}:
// orderId, when given, becomes the order's id (a UUID; otherwise the server
// makes one); total is accepted so those clients work unchanged, and not
// used: the total is always computed from the cart.
type checkoutBody struct {
	OrderID *string         `json:"orderId"`
	Total   json.RawMessage `json:"total"`
}

type emptyBody struct{}

type cancelBody struct {
	Reason *string `json:"reason"`
}

// Decoded requests, ready to become commands.

type newTenant struct {
	TenantID string
	Name     string
}

type itemsRequest struct {
	Remove bool
	Item   cart.Item // add
	SKU    string    // remove
	Qty    int       // remove
}

// Caps on the strings of a request, in bytes (UTF-8). A longer value is
// a 400 naming the field. (Tenant ids are capped at 63 bytes by
// store.ValidateTenantID; cart and order ids are UUIDs.)
const (
	// maxNameLength caps a tenant's display name and an item's name.
	maxNameLength = 200
	// maxSKULength caps a SKU.
	maxSKULength = 64
	// maxReasonLength caps a cancellation reason.
	maxReasonLength = 500
)

// decodeJSON reads one JSON object from body into dst (a pointer to one of
// the body structs). An empty body is an error only when required. Every
// error is a 400 (413 for a body over the size limit) saying what is wrong.
func decodeJSON(body io.Reader, dst any, required bool) (present bool, err *apiError) {
	data, rerr := io.ReadAll(body)
	if rerr != nil {
		var tooBig *http.MaxBytesError
		if errors.As(rerr, &tooBig) {
			return false, &apiError{status: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
		}
		return false, badRequest("reading the request body: %v", rerr)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		if required {
			return false, badRequest("request body is empty: want a JSON object")
		}
		return false, nil
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return false, malformed(trimmed)
		}
		return false, badRequest("request body must be a JSON object, not %s", jsonKind(trimmed[0]))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(dst); derr != nil {
		return false, decodeError(trimmed, derr)
	}
	if dec.More() {
		return false, badRequest("request body must hold exactly one JSON object, found more after byte %d", dec.InputOffset())
	}
	if _, derr := dec.Token(); derr != io.EOF {
		return false, badRequest("request body must hold exactly one JSON object, found more after byte %d", dec.InputOffset())
	}
	// encoding/json quietly turns invalid UTF-8 into U+FFFD; refuse it
	// instead, naming the field that holds it.
	if !utf8.Valid(trimmed) {
		if field := fieldAt(trimmed, invalidUTF8At(trimmed)); field != "" {
			return false, badRequest("field %q is not valid UTF-8", field)
		}
		return false, badRequest("request body is not valid UTF-8")
	}
	return true, nil
}

// invalidUTF8At is the offset of the first byte of data that is not part
// of a valid UTF-8 sequence, or len(data).
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// fieldAt returns the dotted path ("item.sku") of the value of the JSON
// object data that holds byte offset off, or "" when off is not inside a
// field's value.
func fieldAt(data []byte, off int) string {
	type frame struct {
		object  bool
		key     string
		wantKey bool
	}
	var stack []frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		isKey := false
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if k, ok := tok.(string); ok {
				isKey = true
				stack[n-1].key, stack[n-1].wantKey = k, false
			}
		}
		if int(dec.InputOffset()) > off {
			if isKey {
				return ""
			}
			var path []string
			for _, f := range stack {
				if f.object {
					path = append(path, f.key)
				}
			}
			return strings.Join(path, ".")
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			valueDone()
		default:
			if !isKey {
				valueDone()
			}
		}
	}
}

// decodeError explains an error of json.Decoder.Decode.
func decodeError(data []byte, err error) *apiError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return badRequest("malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badRequest("malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "request body"
		}
		return badRequest("field %q: want %s, got %s", field, jsonTypeName(typ.Type), typ.Value)
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return badRequest("unknown field %s", rest)
	}
	if !json.Valid(data) {
		return malformed(data)
	}
	return badRequest("invalid request body: %s", strings.TrimPrefix(msg, "json: "))
}

// malformed explains a body that is not valid JSON.
func malformed(data []byte) *apiError {
	var v any
	err := json.Unmarshal(data, &v)
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return badRequest("malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	}
	return badRequest("malformed JSON: the body ends in the middle of a value")
}

func jsonKind(first byte) string {
	switch first {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// jsonTypeName names the JSON a Go type decodes from.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "another type"
}

// text checks a decoded string field: present and free of NUL characters
// (which PostgreSQL cannot store).
func text(field string, p *string) (string, *apiError) {
	if p == nil {
		return "", badRequest("missing field %q", field)
	}
	if strings.IndexByte(*p, 0) >= 0 {
		return "", badRequest("field %q must not contain NUL characters", field)
	}
	return *p, nil
}

// capped is text with at most maxLen bytes.
func capped(field string, p *string, maxLen int) (string, *apiError) {
	v, err := text(field, p)
	if err != nil {
		return "", err
	}
	if len(v) > maxLen {
		return "", badRequest("field %q is %d bytes long, at most %d allowed", field, len(v), maxLen)
	}
	return v, nil
}

// currencyCode checks a currency: three upper-case ASCII letters (an
// ISO 4217-style code such as "USD"). An empty one is left to the cart
// rules, which answer "Currency is required".
func currencyCode(field string, p *string) (string, *apiError) {
	v, err := text(field, p)
	if err != nil || v == "" {
		return v, err
	}
	ok := len(v) == 3
	for i := 0; ok && i < len(v); i++ {
		ok = v[i] >= 'A' && v[i] <= 'Z'
	}
	if !ok {
		return "", badRequest("field %q must be a three-letter upper-case currency code such as \"USD\", got %s", field, quoteShort(v))
	}
	return v, nil
}

func integer(field string, p *int) (int, *apiError) {
	if p == nil {
		return 0, badRequest("missing field %q", field)
	}
	return *p, nil
}

// decimal reads a money amount: a JSON number, or a string holding one.
func decimal(field string, raw json.RawMessage) (cart.Decimal, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return cart.Decimal{}, badRequest("missing field %q", field)
	}
	var d cart.Decimal
	if err := d.UnmarshalJSON(raw); err != nil {
		if raw[0] != '"' && raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
			return cart.Decimal{}, badRequest("field %q: want a number, got %s", field, jsonKind(raw[0]))
		}
		return cart.Decimal{}, badRequest("field %q: %v", field, err)
	}
	return d, nil
}

func forbid(field, action string, present bool) *apiError {
	if present {
		return badRequest("field %q is not allowed with action %q", field, action)
	}
	return nil
}

// parseCreateTenant decodes POST /api/tenants.
func parseCreateTenant(body io.Reader) (newTenant, *apiError) {
	var b createTenantBody
	if _, err := decodeJSON(body, &b, true); err != nil {
		return newTenant{}, err
	}
	id, err := text("tenantId", b.TenantID)
	if err != nil {
		return newTenant{}, err
	}
	name, err := capped("name", b.Name, maxNameLength)
	if err != nil {
		return newTenant{}, err
	}
	if name == "" {
		return newTenant{}, badRequest("field \"name\" must not be empty")
	}
	if verr := validateTenantID(id); verr != nil {
		return newTenant{}, badRequest("field \"tenantId\": %v", verr)
	}
	return newTenant{TenantID: id, Name: name}, nil
}

// parseCreateCart decodes POST /api/tenants/{tenantId}/carts.
func parseCreateCart(body io.Reader) (string, *apiError) {
	var b createCartBody
	if _, err := decodeJSON(body, &b, true); err != nil {
		return "", err
	}
	return currencyCode("currency", b.Currency)
}

// parseItems decodes PUT …/items.
func parseItems(body io.Reader) (itemsRequest, *apiError) {
	var b itemsBody
	if _, err := decodeJSON(body, &b, true); err != nil {
		return itemsRequest{}, err
	}
	action, err := text("action", b.Action)
	if err != nil {
		return itemsRequest{}, err
	}
	switch action {
	case "add":
		if err := forbid("sku", action, b.SKU != nil); err != nil {
			return itemsRequest{}, err
		}
		if err := forbid("quantity", action, b.Quantity != nil); err != nil {
			return itemsRequest{}, err
		}
		if b.Item == nil {
			return itemsRequest{}, badRequest("missing field %q", "item")
		}
		it := b.Item
		var out cart.Item
		if out.SKU, err = capped("item.sku", it.SKU, maxSKULength); err != nil {
			return itemsRequest{}, err
		}
		if out.Name, err = capped("item.name", it.Name, maxNameLength); err != nil {
			return itemsRequest{}, err
		}
		if out.UnitPrice, err = decimal("item.unitPrice", it.UnitPrice); err != nil {
			return itemsRequest{}, err
		}
		if out.Quantity, err = integer("item.quantity", it.Quantity); err != nil {
			return itemsRequest{}, err
		}
		return itemsRequest{Item: out}, nil
	case "remove":
		if err := forbid("item", action, b.Item != nil); err != nil {
			return itemsRequest{}, err
		}
		sku, err := capped("sku", b.SKU, maxSKULength)
		if err != nil {
			return itemsRequest{}, err
		}
		qty, err := integer("quantity", b.Quantity)
		if err != nil {
			return itemsRequest{}, err
		}
		return itemsRequest{Remove: true, SKU: sku, Qty: qty}, nil
	}
	return itemsRequest{}, badRequest("unknown action %q: want \"add\" or \"remove\"", action)
}

// parseEmpty decodes PUT …/empty: no body, or an empty object.
func parseEmpty(body io.Reader) *apiError {
	var b emptyBody
	_, err := decodeJSON(body, &b, false)
	return err
}

// parseCheckout decodes PUT …/checkout: no body, or {"orderId", "total"},
// both optional. It returns the order id asked for, if any.
func parseCheckout(body io.Reader) (string, *apiError) {
	var b checkoutBody
	if _, err := decodeJSON(body, &b, false); err != nil {
		return "", err
	}
	if len(b.Total) > 0 && string(b.Total) != "null" {
		if _, err := decimal("total", b.Total); err != nil {
			return "", err
		}
	}
	if b.OrderID == nil {
		return "", nil
	}
	id, err := parseUUID("orderId", *b.OrderID)
	if err != nil {
		return "", err
	}
	return id, nil
}

// parseCancel decodes PUT …/cancel.
func parseCancel(body io.Reader) (string, *apiError) {
	var b cancelBody
	if _, err := decodeJSON(body, &b, true); err != nil {
		return "", err
	}
	return capped("reason", b.Reason, maxReasonLength)
}

// parseUUID accepts a UUID in its canonical 36-character form (any case)
// and returns it in lower case.
func parseUUID(what, s string) (string, *apiError) {
	if len(s) == 36 {
		if u, err := parseCanonicalUUID(s); err == nil {
			return u, nil
		}
	}
	return "", badRequest("%s %s is not a UUID", what, quoteShort(s))
}

// quoteShort quotes s for an error message, cut to 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%q…", s[:80])
	}
	return fmt.Sprintf("%q", s)
}
