// Package pgmembership is a protoactor-go cluster membership provider
// (cluster.ClusterProvider) kept in the PostgreSQL database Troupe already
// uses, so a cluster of actor hosts needs no extra infrastructure (no
// consul, etcd or Kubernetes API).
//
//	provider, err := pgmembership.New(pool, nil)
//	// actor.Config{Cluster: &actor.ClusterConfig{Name: "shop", Address: "10.0.0.5:7400", Provider: provider}}
//
// # The table
//
// Members are rows of cluster_members (schema migration 8, applied by
// postgres.Migrate): cluster name, member id, host, port, kinds, joined_at
// and heartbeat_at, keyed by (cluster, member id). The member id is the
// protoactor actor system's id, new at every process start: a member
// restarted at the same address is a new member (and its start deletes the
// row of the process that held the address before it).
//
// # What a member does
//
// StartMember inserts the member's row and publishes the first topology
// before it returns. A goroutine then, every Config.HeartbeatInterval, in
// one statement refreshes the row's heartbeat_at with the database clock
// (now(); members' clocks never matter) and reads the cluster's rows. Rows
// whose heartbeat is older than Config.TTL belong to members that stopped
// (killed, frozen, cut off from the database): they are left out of the
// topology and deleted. The topology (the member itself plus every live
// row) goes to protoactor's member list after every heartbeat (protoactor
// ignores an unchanged one, but applies its block list of members its
// gossip found silent or gone only then); a change is logged. StartClient
// only watches: it neither writes a row nor deletes one.
//
// A member whose own heartbeat fails (database down, slow beyond
// Config.Timeout, connection lost) logs the failure, keeps the last
// topology it published and tries again at the next interval. When its
// heartbeats succeed again it waits one TTL before it expires anyone, and
// meanwhile keeps the members of its last topology: after an outage every
// row is stale, and the others need a heartbeat interval to write theirs.
// A member that failed for longer than TTL while the others did not finds
// its row deleted: it has been removed from the cluster (protoactor never
// lets a member id that left back in), logs an error and does not insert
// itself again; restart the process.
//
// Shutdown deletes the member's row (so the others drop it at their next
// heartbeat instead of after TTL) and stops and waits for the goroutine.
//
// # Failover time
//
// A member that dies without leaving is dropped by the others between TTL
// and TTL plus one heartbeat interval (plus Config.Timeout when a heartbeat
// is slow) after its last heartbeat; with the defaults (1s, 5s) that is at
// most about 6 seconds. Streams it owned are placed on the survivors from
// then on.
package pgmembership
