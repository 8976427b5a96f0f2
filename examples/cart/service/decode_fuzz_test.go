package service

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

var decoderSeeds = []string{
	``, `{}`, `null`, `[]`, `"x"`, `7`, `{"currency":"USD"}`, `{"currency":5}`, `{"currency":null}`,
	`{"tenantId":"acme","name":"Acme"}`, `{"tenantId":"a b","name":""}`, `{"tenantId":"acme","name":"N\u0000"}`,
	`{"action":"add","item":{"sku":"SKU-123","name":"Item 123","unitPrice":25,"quantity":2}}`,
	`{"action":"add","item":{"sku":"S","name":"n","unitPrice":"19.99","quantity":1}}`,
	`{"action":"add","item":{"sku":"S","name":"n","unitPrice":1e999999,"quantity":1}}`,
	`{"action":"add","item":{"sku":"S","name":"n","unitPrice":true,"quantity":1.5}}`,
	`{"action":"remove","sku":"SKU-123","quantity":1}`, `{"action":"remove","sku":"A","quantity":-1,"item":{}}`,
	`{"action":"delete"}`, `{"action":"add","item":null}`, `{"orderId":"8c0f6d5c-8d2e-4c41-9c1f-3f3a3d3b6a55","total":40}`,
	`{"orderId":"x","total":"forty"}`, `{"reason":"Customer requested"}`, `{"reason":"x"} {}`, `{"a":1}`, `{"currency":"USD"`,
	"{\"currency\":\"\xff\xfe\"}", `{"item":{"unitPrice":-0.0000}}`, `{"total":"-"}`, `{"total":[1]}`,
}

// The request decoders never panic, answer every bad body with a 4xx
// apiError whose message is valid UTF-8, and accept only JSON objects
// whose strings hold no NUL.
func FuzzDecoders(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(name string, ok bool, err *apiError, strs ...string) {
			t.Helper()
			if err != nil {
				if err.status != http.StatusBadRequest && err.status != http.StatusRequestEntityTooLarge {
					t.Fatalf("%s(%q): status %d", name, body, err.status)
				}
				if err.msg == "" || !utf8.ValidString(err.msg) {
					t.Fatalf("%s(%q): bad message %q", name, body, err.msg)
				}
				return
			}
			if !ok {
				return
			}
			trimmed := bytes.TrimSpace(body)
			if len(trimmed) > 0 && (trimmed[0] != '{' || !json.Valid(trimmed)) {
				t.Fatalf("%s accepted %q, which is not one JSON object", name, body)
			}
			if !utf8.Valid(body) {
				t.Fatalf("%s accepted %q, which is not valid UTF-8", name, body)
			}
			for _, s := range strs {
				if strings.IndexByte(s, 0) >= 0 {
					t.Fatalf("%s accepted a NUL in %q", name, s)
				}
				if len(s) > maxReasonLength {
					t.Fatalf("%s accepted a %d-byte string", name, len(s))
				}
			}
		}
		in := func() *bytes.Reader { return bytes.NewReader(body) }
		tn, err := parseCreateTenant(in())
		check("parseCreateTenant", true, err, tn.TenantID, tn.Name)
		if err == nil && validateTenantID(tn.TenantID) != nil {
			t.Fatalf("parseCreateTenant accepted tenant id %q", tn.TenantID)
		}
		cur, err := parseCreateCart(in())
		check("parseCreateCart", true, err, cur)
		if err == nil && cur != "" && (len(cur) != 3 || strings.Trim(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "") {
			t.Fatalf("parseCreateCart accepted currency %q", cur)
		}
		it, err := parseItems(in())
		check("parseItems", true, err, it.SKU, it.Item.SKU, it.Item.Name)
		if err == nil && (len(it.SKU) > maxSKULength || len(it.Item.SKU) > maxSKULength || len(it.Item.Name) > maxNameLength) {
			t.Fatalf("parseItems accepted %+v, over a cap", it)
		}
		check("parseEmpty", true, parseEmpty(in()))
		order, err := parseCheckout(in())
		check("parseCheckout", true, err, order)
		if err == nil && order != "" && len(order) != 36 {
			t.Fatalf("parseCheckout accepted order id %q", order)
		}
		reason, err := parseCancel(in())
		check("parseCancel", true, err, reason)
		// Bodies over the limit are 413, whatever they hold.
		limited := http.MaxBytesReader(nil, readCloser(body), int64(len(body)/2))
		if _, err := parseCreateCart(limited); len(body) > 1 && (err == nil || err.status != http.StatusRequestEntityTooLarge) {
			t.Fatalf("parseCreateCart over the size limit (%d of %d bytes) = %v, want 413", len(body)/2, len(body), err)
		}
	})
}

func readCloser(b []byte) *bytesReadCloser { return &bytesReadCloser{bytes.NewReader(b)} }

type bytesReadCloser struct{ *bytes.Reader }

func (bytesReadCloser) Close() error { return nil }

// Position tokens round-trip, and ParsePosition accepts nothing else.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"0.0", "1.2", "18446744073709551615.9223372036854775807", "1", "1.", ".1", "-1.2", "1.2.3", "+1.2", "01.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if strings.Trim(s, "0123456789.") != "" || strings.Count(s, ".") != 1 {
			t.Fatalf("ParsePosition accepted %q", s)
		}
		q, err := ParsePosition(FormatPosition(p))
		if err != nil || q != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, q, err)
		}
	})
}
