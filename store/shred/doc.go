// Package shred erases personal data from an event store by
// crypto-shredding: the values of event fields marked personal are
// encrypted with a key of their data subject when appended and decrypted
// when read; forgetting the subject deletes its key, after which its values
// read as redacted. docs/erasure.md is the guide, with the threat model.
//
// # Marking fields
//
// An event type marks, with the struct tag [Tag], each field holding
// personal data `troupe:"personal"` and the one field naming the data
// subject `troupe:"subject"` (a string or a number, stored in clear).
// [New] reads the tags of the samples in [Config].Events, whose type names
// come from [Config].Codec, and refuses types it can't use: no subject, two
// subjects, no personal field, an unknown tag value, a tag on a field
// encoding/json never writes, or a tag inside a field's value.
//
// # Wrapping a store
//
// [Shredder.Wrap] returns a store.EventStore around any other (store/postgres,
// store/memory) that encrypts on AppendToStream and AppendBatch and
// decrypts on ReadStream and ReadAll; it implements store.BatchAppender and
// store.SnapshotStore exactly when the wrapped store does. Each value is
// encrypted with AES-256-GCM and a random nonce into a self-describing JSON
// object (see [EncryptedKey]), so reads need no type information and
// upcasters may move encrypted values. [Shredder.Decrypt] decrypts events
// read by other means (readmodel.Config.ReadHook).
// Aggregate snapshots are saved as they are, or, when
// [Config].SnapshotSubject names their subject, encrypted whole with its
// key (a forgotten subject's snapshot then loads as missing).
//
// Keys live in a [KeyStore], one per subject and partition:
// store/postgres's KeyStore (table subject_keys, a tenant table) or
// [MemoryKeyStore]. Each Shredder caches keys (Config.CacheSize,
// Config.CacheTTL).
//
// # Forgetting
//
// [Shredder.Forget] deletes a subject's key and leaves a tombstone. Reads
// then replace each of its personal values with the JSON zero value of the
// value's kind ("" , 0, false or null) and list the redacted paths in the
// event's metadata under [MetaRedacted]; appends carrying personal values
// for it fail with [ErrSubjectForgotten].
//
// # Failures
//
// An append whose event of a marked type has an empty subject, or whose
// body already holds [EncryptedKey], fails with store.ErrInvalidArgument
// naming the stream, event, type and field; nothing is written, and in a
// batch only that part fails. A read meeting a value whose subject has
// neither key nor tombstone fails with a *[KeyMissingError] naming the
// event type, stream, partition, position and subject, and returns no
// events; one whose key does not open it, with [ErrUndecryptable].
package shred
