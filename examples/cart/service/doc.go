// Package service is the shopping-cart HTTP service of the Troupe example:
// the seed application's API (tenants and carts) on Troupe's actor host,
// event store, continuous projection and tenancy manager. The main program
// in examples/cart runs it; tests start it in-process with httptest.
//
// # How a request flows
//
// A write (create a cart, add or remove an item, empty, check out, cancel)
// is decoded and checked for shape and types, the tenant is looked up, and
// the command goes to the cart's stream actor ([actor.Host]), which decides
// it with the cart decider (examples/cart/cart) against the state it holds
// in memory and appends the events (stream = cart id, partition = tenant).
// The answer carries the stream's new version, the global position of the
// append and a position token.
//
// A read comes from the carts read model, never from the event log: with
// PostgreSQL it is the table carts, kept by a continuous snapshot projection
// (the snapshot-table variant: the folded state lives in the snapshots table,
// the row holds the key and the mapped columns) that wakes on LISTEN/NOTIFY.
// With the in-memory store it is a map kept by an in-process projection of
// the same fold over the in-memory log. A read given ?waitFor=<position
// token> first waits (at most ?timeout, 5s by default) until the read model
// has applied that position, so a client reads its own writes.
//
// # Routes
//
//	POST /api/tenants                                   {"tenantId","name"} → 201 {id, tenantId, name}
//	GET  /api/tenants                                   → 200 [tenant]
//	GET  /api/tenants/{id}                              id or tenantId → 200 tenant
//	POST /api/tenants/{tenantId}/carts                  {"currency"} → 201 {"message":"Created!","cartId",…}
//	GET  /api/tenants/{tenantId}/carts                  → 200 [cart]
//	GET  /api/tenants/{tenantId}/carts/{cartId}         → 200 cart
//	PUT  /api/tenants/{tenantId}/carts/{cartId}/items   {"action":"add","item":{…}} | {"action":"remove","sku","quantity"}
//	PUT  /api/tenants/{tenantId}/carts/{cartId}/empty
//	PUT  /api/tenants/{tenantId}/carts/{cartId}/checkout
//	PUT  /api/tenants/{tenantId}/carts/{cartId}/cancel  {"reason"}
//	GET  /api/cluster                                   → 200 {"member","members"} (cluster mode only)
//
// In cluster mode (Config.Cluster) a command goes to the member that owns
// its cart, every answer names the member that served it (X-Troupe-Member)
// and a cart write the cart's owner (X-Troupe-Owner), and the host runs the
// carts projection as an actor placed by its name.
//
// A tenant's id is a UUID derived from its tenantId ([TenantUUID]), so it is
// the same in every process and needs no table of its own. Cart ids are
// UUIDs made by the server.
//
// # Errors
//
// Every error is JSON, {"error": "…"}, saying what was wrong:
//
//   - 400: malformed JSON, a field of the wrong type, an unknown field, a
//     missing field, several JSON values, a path id that is not a UUID (or
//     not a valid tenant id), an unknown item action, a bad waitFor token,
//     a string that is not valid UTF-8 or over its cap (named in the
//     message): currency three upper-case letters ("USD"), SKU 64 bytes,
//     item and tenant names 200 bytes, cancellation reason 500 bytes,
//     tenantId 63 bytes of ASCII letters, digits, '_' and '-'.
//   - 404: an unknown tenant or cart (also another tenant's cart: tenants
//     never see each other's carts).
//   - 409: a broken rule that depends on the cart's state, with the rule's
//     message ("Cart is not active", "Item not in cart", "Cannot remove more
//     than in cart"), or a tenant that already exists.
//   - 413: a body larger than Config.MaxBodyBytes (64 KiB by default).
//   - 422: a value the cart rules refuse whatever the state, with the rule's
//     message ("Quantity must be positive", "Unit price must not be
//     negative", "Currency is required", …).
//   - 503, always with Retry-After: the request did not finish within its
//     deadline (Config.RequestTimeout, 10 s by default, which bounds the
//     tenant look-up, the command, the read and any ?waitFor wait); the
//     database is unreachable (connection refused or cut, restarting, no
//     connection slot); the outcome of a command is unknown (read the cart
//     before sending it again); the read model did not catch up within the
//     wait's timeout; or the service is shutting down.
//
// Nothing is appended for a rejected request. A 500 means a failure of the
// service itself, never bad input nor an unavailable database; its detail
// is logged, not sent.
package service
