package service_test

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Every bad request gets a 4xx JSON error saying what was wrong, and
// appends nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, e *env) {
		e.createTenant(t, "acme")
		cartID, _ := e.createCart(t, "acme")
		cartPath := "/api/tenants/acme/carts/" + cartID
		e.must(t, http.StatusCreated, "PUT", cartPath+"/items", `{"action":"add","item":{"sku":"A","name":"a","unitPrice":2,"quantity":2}}`)
		doneID, _ := e.createCart(t, "acme")
		e.must(t, http.StatusCreated, "PUT", "/api/tenants/acme/carts/"+doneID+"/checkout", "")
		missingCart := uuid.NewString()
		items := cartPath + "/items"
		big := `{"currency":"` + strings.Repeat("x", 70_000) + `"}`

		cases := []struct {
			name, method, path, body string
			status                   int
			want                     string // the whole error message, or its start when it ends in "…"
		}{
			// Syntax.
			{"truncated JSON", "POST", "/api/tenants/acme/carts", `{"currency":`, 400, "malformed JSON: the body ends in the middle of a value"},
			{"bad JSON", "POST", "/api/tenants/acme/carts", `{"currency" "USD"}`, 400, `malformed JSON at byte 13: invalid character '"' after object key`},
			{"bad JSON in items", "PUT", items, `{"action":"add",}`, 400, `malformed JSON at byte 17: invalid character '}' looking for beginning of object key string`},
			{"not JSON", "POST", "/api/tenants", `tenantId=acme`, 400, `malformed JSON at byte 2: invalid character 'e' in literal true (expecting 'r')`},
			{"array body", "POST", "/api/tenants/acme/carts", `[{"currency":"USD"}]`, 400, "request body must be a JSON object, not an array"},
			{"null body", "PUT", cartPath + "/cancel", `null`, 400, "request body must be a JSON object, not null"},
			{"string body", "PUT", cartPath + "/empty", `"empty"`, 400, "request body must be a JSON object, not a string"},
			{"empty body", "POST", "/api/tenants/acme/carts", ``, 400, "request body is empty: want a JSON object"},
			{"blank body", "POST", "/api/tenants", "  \n", 400, "request body is empty: want a JSON object"},
			{"two objects", "POST", "/api/tenants/acme/carts", `{"currency":"USD"}{"currency":"EUR"}`, 400, "request body must hold exactly one JSON object, found more after byte 18"},
			{"trailing garbage", "PUT", cartPath + "/cancel", `{"reason":"x"} x`, 400, "request body must hold exactly one JSON object…"},
			// Types.
			{"currency number", "POST", "/api/tenants/acme/carts", `{"currency":5}`, 400, `field "currency": want a string, got number`},
			{"quantity string", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":"2"}}`, 400, `field "item.quantity": want an integer, got string`},
			{"quantity fraction", "PUT", items, `{"action":"remove","sku":"A","quantity":1.5}`, 400, `field "quantity": want an integer, got number 1.5`},
			{"quantity overflow", "PUT", items, `{"action":"remove","sku":"A","quantity":99999999999999999999}`, 400, `field "quantity": want an integer, got number 99999999999999999999`},
			{"price boolean", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":true,"quantity":1}}`, 400, `field "item.unitPrice": want a number, got a boolean`},
			{"price text", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":"cheap","quantity":1}}`, 400, `field "item.unitPrice": invalid decimal: "cheap" is not a decimal number`},
			{"price too precise", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":0.0000000000000000000000000000001,"quantity":1}}`, 400, `field "item.unitPrice": invalid decimal: "0.0000000000000000000000000000001" has 31 digits after the point, at most 30 allowed`},
			{"item not an object", "PUT", items, `{"action":"add","item":"SKU-1"}`, 400, `field "item": want an object, got string`},
			{"action number", "PUT", items, `{"action":1}`, 400, `field "action": want a string, got number`},
			{"name number", "POST", "/api/tenants", `{"tenantId":"x","name":7}`, 400, `field "name": want a string, got number`},
			{"total text", "PUT", cartPath + "/checkout", `{"total":"forty"}`, 400, `field "total": invalid decimal: "forty" is not a decimal number`},
			// Unknown fields.
			{"unknown field", "POST", "/api/tenants/acme/carts", `{"currency":"USD","color":"red"}`, 400, `unknown field "color"`},
			{"unknown item field", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":1,"colour":"red"}}`, 400, `unknown field "colour"`},
			{"empty with a field", "PUT", cartPath + "/empty", `{"all":true}`, 400, `unknown field "all"`},
			{"tenant extra field", "POST", "/api/tenants", `{"tenantId":"x","name":"X","id":"1"}`, 400, `unknown field "id"`},
			// Missing fields.
			{"no currency", "POST", "/api/tenants/acme/carts", `{}`, 400, `missing field "currency"`},
			{"null currency", "POST", "/api/tenants/acme/carts", `{"currency":null}`, 400, `missing field "currency"`},
			{"no action", "PUT", items, `{"sku":"A","quantity":1}`, 400, `missing field "action"`},
			{"no item", "PUT", items, `{"action":"add"}`, 400, `missing field "item"`},
			{"no sku", "PUT", items, `{"action":"add","item":{"name":"b","unitPrice":1,"quantity":1}}`, 400, `missing field "item.sku"`},
			{"no price", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","quantity":1}}`, 400, `missing field "item.unitPrice"`},
			{"null price", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":null,"quantity":1}}`, 400, `missing field "item.unitPrice"`},
			{"no item quantity", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1}}`, 400, `missing field "item.quantity"`},
			{"no remove quantity", "PUT", items, `{"action":"remove","sku":"A"}`, 400, `missing field "quantity"`},
			{"no reason", "PUT", cartPath + "/cancel", `{}`, 400, `missing field "reason"`},
			{"no tenant name", "POST", "/api/tenants", `{"tenantId":"x"}`, 400, `missing field "name"`},
			{"no tenantId", "POST", "/api/tenants", `{"name":"X"}`, 400, `missing field "tenantId"`},
			{"empty tenant name", "POST", "/api/tenants", `{"tenantId":"x","name":""}`, 400, `field "name" must not be empty`},
			{"long tenant name", "POST", "/api/tenants", `{"tenantId":"x","name":"` + strings.Repeat("n", 201) + `"}`, 400, `field "name" is 201 bytes long, at most 200 allowed`},
			// Caps: lengths in bytes, currency codes, UTF-8.
			{"currency lower case", "POST", "/api/tenants/acme/carts", `{"currency":"usd"}`, 400, `field "currency" must be a three-letter upper-case currency code such as "USD", got "usd"`},
			{"currency too long", "POST", "/api/tenants/acme/carts", `{"currency":"USDX"}`, 400, `field "currency" must be a three-letter upper-case currency code such as "USD", got "USDX"`},
			{"currency too short", "POST", "/api/tenants/acme/carts", `{"currency":"US"}`, 400, `field "currency" must be a three-letter upper-case currency code…`},
			{"currency not ASCII", "POST", "/api/tenants/acme/carts", `{"currency":"ÜSD"}`, 400, `field "currency" must be a three-letter upper-case currency code…`},
			{"currency a word", "POST", "/api/tenants/acme/carts", `{"currency":"` + strings.Repeat("X", 1000) + `"}`, 400, `field "currency" must be a three-letter upper-case currency code…`},
			{"long sku", "PUT", items, `{"action":"add","item":{"sku":"` + strings.Repeat("s", 65) + `","name":"b","unitPrice":1,"quantity":1}}`, 400, `field "item.sku" is 65 bytes long, at most 64 allowed`},
			{"long sku to remove", "PUT", items, `{"action":"remove","sku":"` + strings.Repeat("s", 65) + `","quantity":1}`, 400, `field "sku" is 65 bytes long, at most 64 allowed`},
			{"long item name", "PUT", items, `{"action":"add","item":{"sku":"B","name":"` + strings.Repeat("é", 101) + `","unitPrice":1,"quantity":1}}`, 400, `field "item.name" is 202 bytes long, at most 200 allowed`},
			{"long reason", "PUT", cartPath + "/cancel", `{"reason":"` + strings.Repeat("r", 501) + `"}`, 400, `field "reason" is 501 bytes long, at most 500 allowed`},
			{"invalid UTF-8 in item name", "PUT", items, "{\"action\":\"add\",\"item\":{\"sku\":\"B\",\"name\":\"b\xff\",\"unitPrice\":1,\"quantity\":1}}", 400, `field "item.name" is not valid UTF-8`},
			{"invalid UTF-8 in sku", "PUT", items, "{\"action\":\"remove\",\"sku\":\"\xc3\",\"quantity\":1}", 400, `field "sku" is not valid UTF-8`},
			{"invalid UTF-8 in currency", "POST", "/api/tenants/acme/carts", "{\"currency\":\"\xff\xfe\"}", 400, `field "currency" is not valid UTF-8`},
			{"invalid UTF-8 in reason", "PUT", cartPath + "/cancel", "{\"reason\":\"ok \xed\xa0\x80\"}", 400, `field "reason" is not valid UTF-8`},
			{"invalid UTF-8 in tenant name", "POST", "/api/tenants", "{\"tenantId\":\"utf\",\"name\":\"\xe2\x82\"}", 400, `field "name" is not valid UTF-8`},
			{"invalid UTF-8 in a field name", "POST", "/api/tenants", "{\"na\xffme\":\"x\",\"tenantId\":\"utf\"}", 400, `unknown field…`},
			// Actions.
			{"unknown action", "PUT", items, `{"action":"delete","sku":"A","quantity":1}`, 400, `unknown action "delete": want "add" or "remove"`},
			{"add with top-level sku", "PUT", items, `{"action":"add","sku":"A","item":{"sku":"B","name":"b","unitPrice":1,"quantity":1}}`, 400, `field "sku" is not allowed with action "add"`},
			{"remove with item", "PUT", items, `{"action":"remove","sku":"A","quantity":1,"item":{}}`, 400, `field "item" is not allowed with action "remove"`},
			// Values the cart rules refuse (422), whatever the state.
			{"zero quantity", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":0}}`, 422, "Quantity must be positive"},
			{"negative quantity", "PUT", items, `{"action":"remove","sku":"A","quantity":-1}`, 422, "Quantity must be positive"},
			{"negative price", "PUT", items, `{"action":"add","item":{"sku":"B","name":"b","unitPrice":-1,"quantity":1}}`, 422, "Unit price must not be negative"},
			{"empty sku", "PUT", items, `{"action":"remove","sku":"","quantity":1}`, 422, "SKU is required"},
			{"empty currency", "POST", "/api/tenants/acme/carts", `{"currency":""}`, 422, "Currency is required"},
			{"empty reason", "PUT", cartPath + "/cancel", `{"reason":""}`, 422, "Reason is required"},
			// Rules that depend on the cart (409).
			{"remove absent sku", "PUT", items, `{"action":"remove","sku":"Z","quantity":1}`, 409, "Item not in cart"},
			{"remove too many", "PUT", items, `{"action":"remove","sku":"A","quantity":3}`, 409, "Cannot remove more than in cart"},
			{"add to checked-out cart", "PUT", "/api/tenants/acme/carts/" + doneID + "/items", `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":1}}`, 409, "Cart is not active"},
			{"check out twice", "PUT", "/api/tenants/acme/carts/" + doneID + "/checkout", ``, 409, "Cart is not active"},
			{"quantity overflow in cart", "PUT", items, fmt.Sprintf(`{"action":"add","item":{"sku":"A","name":"a","unitPrice":2,"quantity":%d}}`, math.MaxInt64), 409, "Quantity too large"},
			{"tenant exists", "POST", "/api/tenants", `{"tenantId":"acme","name":"Again"}`, 409, `tenant "acme" already exists`},
			// Ids.
			{"cart id not a UUID", "GET", "/api/tenants/acme/carts/not-a-uuid", ``, 400, `cart id "not-a-uuid" is not a UUID`},
			{"cart id in braces", "PUT", "/api/tenants/acme/carts/{" + cartID + "}/empty", ``, 400, `cart id "{` + cartID + `}" is not a UUID`},
			{"cart id without dashes", "PUT", "/api/tenants/acme/carts/" + strings.ReplaceAll(cartID, "-", "") + "/checkout", ``, 400, `cart id "` + strings.ReplaceAll(cartID, "-", "") + `" is not a UUID`},
			{"order id not a UUID", "PUT", cartPath + "/checkout", `{"orderId":"ORDER-1"}`, 400, `orderId "ORDER-1" is not a UUID`},
			{"tenant path invalid", "GET", "/api/tenants/bad%20tenant/carts", ``, 400, `tenant id "bad tenant" is neither a tenant id ("bad tenant" contains ' ' at byte 3 (allowed: ASCII letters, digits, '_' and '-')) nor a tenant's UUID`},
			{"tenant path invalid on write", "POST", "/api/tenants/a;drop/carts", `{"currency":"USD"}`, 400, `tenant id "a;drop" is neither a tenant id…`},
			{"tenantId invalid", "POST", "/api/tenants", `{"tenantId":"bad id","name":"X"}`, 400, `field "tenantId": "bad id" contains ' ' at byte 3 (allowed: ASCII letters, digits, '_' and '-')`},
			{"tenantId too long", "POST", "/api/tenants", `{"tenantId":"` + strings.Repeat("t", 64) + `","name":"X"}`, 400, `field "tenantId": 64 bytes, at most 63 allowed`},
			{"tenantId star", "POST", "/api/tenants", `{"tenantId":"*","name":"X"}`, 400, `field "tenantId": "*" contains '*' at byte 0…`},
			{"NUL in sku", "PUT", items, `{"action":"add","item":{"sku":"A\u0000","name":"a","unitPrice":1,"quantity":1}}`, 400, `field "item.sku" must not contain NUL characters`},
			{"NUL in tenant name", "POST", "/api/tenants", `{"tenantId":"nul","name":"N\u0000L"}`, 400, `field "name" must not contain NUL characters`},
			{"NUL in reason", "PUT", cartPath + "/cancel", `{"reason":"\u0000"}`, 400, `field "reason" must not contain NUL characters`},
			// Unknown tenants and carts.
			{"unknown tenant", "POST", "/api/tenants/nobody/carts", `{"currency":"USD"}`, 404, `tenant "nobody" not found`},
			{"unknown tenant list", "GET", "/api/tenants/nobody/carts", ``, 404, `tenant "nobody" not found`},
			{"unknown tenant cart", "PUT", "/api/tenants/nobody/carts/" + cartID + "/empty", ``, 404, `tenant "nobody" not found`},
			{"unknown cart read", "GET", "/api/tenants/acme/carts/" + missingCart, ``, 404, "cart " + missingCart + ` not found in tenant "acme"`},
			{"unknown cart write", "PUT", "/api/tenants/acme/carts/" + missingCart + "/items", `{"action":"add","item":{"sku":"B","name":"b","unitPrice":1,"quantity":1}}`, 404, "cart " + missingCart + ` not found in tenant "acme"`},
			{"unknown cart cancel", "PUT", "/api/tenants/acme/carts/" + missingCart + "/cancel", `{"reason":"x"}`, 404, "cart " + missingCart + ` not found in tenant "acme"`},
			// Size.
			{"oversized body", "POST", "/api/tenants/acme/carts", big, 413, "request body is larger than 65536 bytes"},
			{"oversized items body", "PUT", items, `{"action":"add","item":{"sku":"` + strings.Repeat("s", 70_000) + `"}}`, 413, "request body is larger than 65536 bytes"},
			// Reads.
			{"bad waitFor", "GET", cartPath + "?waitFor=12", ``, 400, `query parameter waitFor: "12" is not a position token: want <transaction id>.<global position> as returned in "position" by a write`},
			{"bad timeout", "GET", cartPath + "?waitFor=1.1&timeout=soon", ``, 400, `query parameter timeout: "soon" is not a positive duration such as 2s or 500ms`},
			{"timeout too long", "GET", cartPath + "?waitFor=1.1&timeout=1h", ``, 400, `query parameter timeout: 1h0m0s is longer than the maximum, 30s`},
			// Routes.
			{"method not allowed", "DELETE", cartPath, ``, 405, "method DELETE is not allowed on /api/tenants/{tenantId}/carts/{cartId} (allowed: GET)"},
			{"POST to items", "POST", items, `{}`, 405, "method POST is not allowed on /api/tenants/{tenantId}/carts/{cartId}/items (allowed: PUT)"},
			{"unknown route", "GET", "/api/carts", ``, 404, `no route for GET "/api/carts"`},
		}
		before := e.eventCount(t)
		for _, tc := range cases {
			r := e.do(t, tc.method, tc.path, tc.body)
			require.Equal(t, tc.status, r.Status, "%s: %s %s → %s", tc.name, tc.method, tc.path, r.Body)
			msg := r.Error(t)
			if prefix, ok := strings.CutSuffix(tc.want, "…"); ok {
				require.True(t, strings.HasPrefix(msg, prefix), "%s: error %q does not start with %q", tc.name, msg, prefix)
			} else {
				require.Equal(t, tc.want, msg, tc.name)
			}
			require.Equal(t, before, e.eventCount(t), "%s appended events", tc.name)
		}
		require.EqualValues(t, 2, e.streamVersion(t, "acme", cartID))
		require.EqualValues(t, 0, e.streamVersion(t, "acme", missingCart))
		for _, id := range []string{"nul", "utf"} {
			r := e.do(t, "GET", "/api/tenants/"+id, "")
			require.Equal(t, http.StatusNotFound, r.Status, "a rejected tenant %q was created", id)
		}
	})
}
