// Package redis holds the distributed implementations of Revenue Guard's root
// interfaces on Redis (one server, or a Redis Cluster), shared by any number of
// stateless nodes: the Inventory, whose every change is one Lua script on the keys of
// one shard and appends its events to the shard's outbox stream in the same atomic
// step; the Outbox, which copies those streams into the ledger exactly once in
// effect; CheckDurability, which warns when Redis could lose acknowledged holds; Dial;
// and the sessions and rate limits of the distributed mode. docs/distributed.md
// describes the design and the key layout.
//
// go-redis is imported as goredis, and only in this package.
package redis
