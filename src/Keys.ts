/**
 * Keys: the managed API keys, each client with its own (`nx_…`), its own limits and its own conversations. Next to
 * them, the single `API_KEY` of the original contract keeps working (`Auth.ts`).
 *
 * A key is shown once, when it is created; only its SHA-256 is stored (a key carries 256 random bits, so a fast
 * hash is enough: nothing to brute-force offline). A request's key is looked up by that digest, so neither the key
 * nor its length reaches a comparison that could leak through timing.
 *
 * What a replica learned about a key is trusted for `API_KEY_CACHE_MS` (at most 5 s): a revoked key stops working on
 * every replica within that time, without a database query per request. When a key is used is remembered in
 * memory and written in batches (`LAST_USED_FLUSH`), not once per request. While the database is unreachable, keys
 * that this replica has seen keep working as they last were; others get 503.
 *
 * The store is the Storage database (`Keys/Postgres.ts`: PostgreSQL or the embedded PGlite); memory for tests.
 */
import {
  Cache,
  Context,
  Data,
  DateTime,
  Duration,
  Effect,
  Exit,
  Layer,
  Option,
  Redacted,
  Schedule,
  type Scope
} from "effect"
import { createHash, randomBytes } from "node:crypto"
import { ClientError, retryAfter } from "./Domain/Errors.js"

/** What a key sets for itself; none: the server's default (`RATE_LIMIT_*`). 0 is unlimited. */
export interface KeyLimits {
  readonly requestsPerMinute: Option.Option<number>
  readonly tokensPerMinute: Option.Option<number>
  readonly concurrency: Option.Option<number>
}

export const defaultLimits: KeyLimits = {
  requestsPerMinute: Option.none(),
  tokensPerMinute: Option.none(),
  concurrency: Option.none()
}

/** A managed key as listed: everything but the key itself. */
export interface ApiKeyInfo {
  /** `key_` + 24 hex digits: what sessions, conversations, logs and metrics refer to. */
  readonly id: string
  readonly name: string
  /** The key's first characters (`nx_` + 8), enough to recognise it in a listing. */
  readonly prefix: string
  readonly limits: KeyLimits
  readonly createdAt: DateTime.Utc
  readonly lastUsedAt: Option.Option<DateTime.Utc>
  readonly revokedAt: Option.Option<DateTime.Utc>
}

/** A row of the store: the key's info and its digest. */
export interface StoredKey extends ApiKeyInfo {
  readonly keyHash: string
}

export class KeysUnavailable extends ClientError<KeysUnavailable>()(
  "KeysUnavailable",
  503,
  "The API key store (the database) cannot be reached; retry shortly",
  retryAfter
) {}

/** `revoke` found no key with that id, prefix or value. */
export class KeyNotFound extends Data.TaggedError("KeyNotFound")<{ readonly ref: string }> {
  override get message() {
    return `no API key with the id or prefix ${this.ref}`
  }
}

/** A failure of the store itself (database unreachable, timeout): the cause is for the log. */
export class KeyStoreError extends Data.TaggedError("KeyStoreError")<{ readonly message: string }> {}

/** Where keys are kept. Every method is one statement. */
export interface KeyStore {
  readonly findByHash: (keyHash: string) => Effect.Effect<Option.Option<StoredKey>, KeyStoreError>
  readonly insert: (key: StoredKey) => Effect.Effect<void, KeyStoreError>
  /** Oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<ApiKeyInfo>, KeyStoreError>
  /** Marks the key with this id, prefix or digest revoked (keeping an earlier revocation's time); none if unknown. */
  readonly revoke: (
    ref: { readonly idOrPrefix: string; readonly keyHash: string },
    at: DateTime.Utc
  ) => Effect.Effect<Option.Option<ApiKeyInfo>, KeyStoreError>
  /** Records when keys were last used (never moving a time backwards). */
  readonly touch: (lastUsed: ReadonlyMap<string, DateTime.Utc>) => Effect.Effect<void, KeyStoreError>
}

export interface NewKey {
  readonly info: ApiKeyInfo
  /** Shown once, to the person who created it; never stored. */
  readonly key: Redacted.Redacted
}

export interface KeysShape {
  /** The active managed key whose value this is; none for an unknown or revoked key. */
  readonly authenticate: (key: string) => Effect.Effect<Option.Option<ApiKeyInfo>, KeysUnavailable>
  readonly create: (input: {
    readonly name: string
    readonly limits: KeyLimits
  }) => Effect.Effect<NewKey, KeyStoreError>
  readonly list: Effect.Effect<ReadonlyArray<ApiKeyInfo>, KeyStoreError>
  /** Revokes by id, shown prefix or the key itself; revoking twice keeps the first time. */
  readonly revoke: (ref: string) => Effect.Effect<ApiKeyInfo, KeyNotFound | KeyStoreError>
}

export class Keys extends Context.Tag("nexxi/Keys")<Keys, KeysShape>() {
  /** Managed keys in memory, with the store for a test to look at. */
  static readonly Test = (options: Partial<KeysOptions> = {}) => {
    const store = makeMemoryKeyStore()
    return {
      store,
      layer: Layer.scoped(Keys, makeKeys(store.store, { cacheMillis: 0, lastUsedFlushMillis: 1_000, ...options }))
    }
  }
}

// --- Keys and their digests -------------------------------------------------------------------------------------

export const KEY_PREFIX = "nx_"
/** `nx_` and 43 base64url characters (256 bits). */
const KEY_LENGTH = KEY_PREFIX.length + 43
const SHOWN_PREFIX_LENGTH = KEY_PREFIX.length + 8

export const keyDigest = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex")

/**
 * Whether a value can be a managed key at all: anything else is refused without a database query. (The
 * development key, `nx_dev_…`, is the API_KEY and is recognised before this.)
 */
export const isManagedKeyShape = (key: string) =>
  key.length === KEY_LENGTH && key.startsWith(KEY_PREFIX) && /^[A-Za-z0-9_-]+$/.test(key)

/** A new key and the row that stands for it. */
export const generateKey = (input: {
  readonly name: string
  readonly limits: KeyLimits
  readonly now: DateTime.Utc
}) => {
  const key = KEY_PREFIX + randomBytes(32).toString("base64url")
  const stored: StoredKey = {
    // 96 bits: longer than the id of the single API_KEY (`key_` + 16 hex digits), so the two can never be equal.
    id: `key_${randomBytes(12).toString("hex")}`,
    name: input.name,
    prefix: key.slice(0, SHOWN_PREFIX_LENGTH),
    limits: input.limits,
    createdAt: input.now,
    lastUsedAt: Option.none(),
    revokedAt: Option.none(),
    keyHash: keyDigest(key)
  }
  return { key, stored }
}

const infoOf = ({ keyHash: _, ...info }: StoredKey): ApiKeyInfo => info

// --- The service: a cache and batched last-used times over a store ------------------------------------------------

export interface KeysOptions {
  /** How long a lookup's answer is trusted (API_KEY_CACHE_MS); 0: every request asks the store. */
  readonly cacheMillis: number
  /** How often the last-used times are written. */
  readonly lastUsedFlushMillis: number
}

/** Every minute: `last_used_at` is a "when was this key last seen", not an audit log. */
export const LAST_USED_FLUSH = Duration.minutes(1)

const CACHE_CAPACITY = 10_000

export const makeKeys = (store: KeyStore, options: KeysOptions): Effect.Effect<KeysShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    // By digest. Unknown keys are cached too (an attacker's guesses cannot evict much: the cache is bounded and
    // failed attempts are rate limited per address); a store failure is not cached.
    const lookups = yield* Cache.makeWith({
      capacity: CACHE_CAPACITY,
      lookup: (keyHash: string) => store.findByHash(keyHash),
      timeToLive: (exit) => (Exit.isSuccess(exit) ? Duration.millis(options.cacheMillis) : Duration.zero)
    })
    // The last answer for each key that worked, for when the store cannot be reached.
    const lastKnown = new Map<string, StoredKey>()
    let storeDown = false

    const lastUsed = new Map<string, DateTime.Utc>()
    const flush = Effect.suspend(() => {
      if (lastUsed.size === 0) return Effect.void
      const batch = new Map(lastUsed)
      return store.touch(batch).pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            // Keep what was used again while writing.
            for (const [id, at] of batch) if (lastUsed.get(id) === at) lastUsed.delete(id)
          })
        ),
        Effect.catchAll((error) => Effect.logWarning(`Keys: could not record when keys were used: ${error.message}`))
      )
    })
    yield* Effect.forkScoped(Effect.schedule(flush, Schedule.spaced(Duration.millis(options.lastUsedFlushMillis))))
    yield* Effect.addFinalizer(() => flush.pipe(Effect.timeout("2 seconds"), Effect.ignore))

    const found = (key: StoredKey) =>
      Effect.gen(function* () {
        if (Option.isSome(key.revokedAt)) {
          lastKnown.delete(key.keyHash)
          return Option.none<ApiKeyInfo>()
        }
        lastKnown.set(key.keyHash, key)
        lastUsed.set(key.id, yield* DateTime.now)
        return Option.some(infoOf(key))
      })

    const authenticate = (key: string) =>
      Effect.gen(function* () {
        if (!isManagedKeyShape(key)) return Option.none<ApiKeyInfo>()
        const keyHash = keyDigest(key)
        const looked = yield* Effect.either(lookups.get(keyHash))
        if (looked._tag === "Right") {
          if (storeDown) yield* Effect.logInfo("Keys: the key store is reachable again")
          storeDown = false
          return yield* Option.match(looked.right, { onNone: () => Effect.succeedNone, onSome: found })
        }
        // Not kept: the next request asks the store again.
        yield* lookups.invalidate(keyHash)
        if (!storeDown) yield* Effect.logWarning(`Keys: the key store cannot be reached: ${looked.left.message}`)
        storeDown = true
        const known = lastKnown.get(keyHash)
        if (known !== undefined) return yield* found(known)
        return yield* new KeysUnavailable({
          message: "API keys cannot be checked right now: the key store is unreachable. Retry shortly.",
          retry_after_seconds: 2
        })
      }).pipe(Effect.withSpan("Keys.authenticate"))

    return {
      authenticate,
      create: (input) =>
        Effect.gen(function* () {
          const { key, stored } = generateKey({ ...input, now: yield* DateTime.now })
          yield* store.insert(stored)
          return { info: infoOf(stored), key: Redacted.make(key) }
        }),
      list: store.list,
      revoke: (ref) =>
        Effect.gen(function* () {
          const revoked = yield* store.revoke({ idOrPrefix: ref, keyHash: keyDigest(ref) }, yield* DateTime.now)
          if (Option.isNone(revoked)) return yield* new KeyNotFound({ ref })
          // Here at once; elsewhere within the cache's time.
          yield* lookups.invalidateAll
          lastKnown.clear()
          return revoked.value
        })
    } satisfies KeysShape
  })

// --- Memory store -----------------------------------------------------------------------------------------------

/** Keys in process memory, for tests; `fail` makes every call fail as an unreachable database would. */
export const makeMemoryKeyStore = () => {
  const rows = new Map<string, StoredKey>()
  let failing = false
  const guarded = <A>(effect: Effect.Effect<A>) =>
    Effect.suspend(() => (failing ? new KeyStoreError({ message: "the memory store is failing" }) : effect))
  const store: KeyStore = {
    findByHash: (keyHash) =>
      guarded(Effect.sync(() => Option.fromNullable([...rows.values()].find((row) => row.keyHash === keyHash)))),
    insert: (key) => guarded(Effect.sync(() => void rows.set(key.id, key))),
    list: guarded(Effect.sync(() => [...rows.values()].map(infoOf))),
    revoke: ({ idOrPrefix, keyHash }, at) =>
      guarded(
        Effect.sync(() => {
          const row = [...rows.values()].find(
            (row) => row.id === idOrPrefix || row.prefix === idOrPrefix || row.keyHash === keyHash
          )
          if (row === undefined) return Option.none()
          const revoked = { ...row, revokedAt: Option.orElse(row.revokedAt, () => Option.some(at)) }
          rows.set(row.id, revoked)
          return Option.some(infoOf(revoked))
        })
      ),
    touch: (lastUsed) =>
      guarded(
        Effect.sync(() => {
          for (const [id, at] of lastUsed) {
            const row = rows.get(id)
            if (row === undefined) continue
            const later = Option.match(row.lastUsedAt, {
              onNone: () => at,
              onSome: (before) => DateTime.max(before, at)
            })
            rows.set(id, { ...row, lastUsedAt: Option.some(later) })
          }
        })
      )
  }
  return {
    store,
    rows: rows as ReadonlyMap<string, StoredKey>,
    setFailing: (value: boolean) => void (failing = value)
  }
}
