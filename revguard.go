// Package revguard holds the domain of Revenue Guard, a flash-sale guard that sells a
// limited stock of each product (SKU) to a crowd that arrives all at once.
//
// Every change to one SKU goes through that SKU's serialisation point (an [Inventory]),
// one at a time, so that at every instant
//
//	available + held + sold == stock
//
// with each term non-negative, and no customer holds or owns more than the SKU's
// per-customer limit. A [Reservation] is a hold with a deadline: it is confirmed into a
// sale, released, or expires and gives its units back.
//
// Every acknowledged change is durable before the call that made it returns. Each change
// is an [Event] with a sequence number; the [LedgerWriter] copies events into the
// [Ledger], the permanent order history, asynchronously and exactly once.
//
// Customers authenticate with session tokens ([Sessions]); every reservation is verified
// by a [BotChecker] before inventory is touched; a [RateLimiter] bounds each customer and
// each client address.
//
// This package holds only types, interfaces and pure rules, and imports only the standard
// library. The adapters (inproc, journal, sqlite, postgres, redis, turnstile, httpapi)
// implement the interfaces; cmd/revguard wires them together.
package revguard
