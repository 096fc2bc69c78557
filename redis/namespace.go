package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// DeleteNamespace deletes every key of namespace ns from every master behind client:
// the shards' keys ("{<ns>:…") and the others ("<ns>:…": settings, idempotency
// bindings, sessions, rate limits). It is for tools and tests that made a namespace
// of their own on a shared server (revguard loadtest's distributed baseline, the
// end-to-end tests); a deployment never calls it. It walks the keys with SCAN, so
// that it never blocks the server, and deletes them with UNLINK.
func DeleteNamespace(ctx context.Context, client goredis.UniversalClient, ns string) error {
	if !validNamespace(ns) {
		return fmt.Errorf("redis: delete namespace: invalid namespace %q", ns)
	}
	// A namespace is [A-Za-z0-9._-]: no glob character, and the ':' after it keeps
	// "rg" from matching "rg2".
	del := func(ctx context.Context, node *goredis.Client) error {
		for _, pattern := range []string{ns + ":*", "{" + ns + ":*"} {
			iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
			var batch []string
			for iter.Next(ctx) {
				if batch = append(batch, iter.Val()); len(batch) == 500 {
					if err := node.Unlink(ctx, batch...).Err(); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
			if err := iter.Err(); err != nil {
				return err
			}
			if len(batch) > 0 {
				if err := node.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var err error
	switch c := client.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, del)
	case *goredis.Client:
		err = del(ctx, c)
	default:
		return fmt.Errorf("redis: delete namespace: unsupported client %T", client)
	}
	if err != nil {
		return fmt.Errorf("redis: delete namespace %s: %w", ns, storeErr("delete keys", err))
	}
	return nil
}
