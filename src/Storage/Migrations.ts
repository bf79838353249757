/**
 * The database schema, as migrations applied in order at start-up. Migrations only ever add (tables, columns,
 * indexes): never drop or rewrite data, so that an older replica still running during a rolling deploy keeps
 * working. A migration, once released, is never edited: add a new one.
 *
 * Several replicas may start at once: `migrate` holds a PostgreSQL advisory lock for the whole run, so that one
 * applies the migrations and the others then find nothing to do. (The migrator's own `LOCK TABLE` does not cover
 * the creation of its migrations table, which two fresh replicas would otherwise race on.)
 */
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { Effect } from "effect"

/** The migrator's bookkeeping table (the migrator's own default name would be shared with other applications). */
export const MIGRATIONS_TABLE = "nexxi_migrations"

/** Any constant unique to Nexxi's schema: `pg_advisory_xact_lock` takes a bigint. ("nexxi" in ASCII.) */
const MIGRATION_LOCK_KEY = 0x6e65787869

const initial = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // The conversation's id is its session id. A deleted conversation keeps its row (without title or messages),
  // so that a turn still on its way to the database cannot bring it back.
  yield* sql`
    CREATE TABLE conversations (
      id uuid PRIMARY KEY,
      owner text NOT NULL,
      title text,
      created_at timestamptz NOT NULL,
      updated_at timestamptz NOT NULL,
      deleted_at timestamptz
    )`
  // GET /v1/conversations: an owner's live conversations, newest first, by keyset.
  yield* sql`
    CREATE INDEX conversations_by_owner ON conversations (owner, created_at DESC, id DESC)
    WHERE deleted_at IS NULL`
  // A turn is two messages; `turn_id` makes writing it twice store it once. The primary key serves transcripts.
  yield* sql`
    CREATE TABLE messages (
      conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
      seq integer NOT NULL,
      turn_id uuid NOT NULL,
      role text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
      content text NOT NULL,
      tokens integer NOT NULL CHECK (tokens >= 0),
      safety_action text,
      safety_categories jsonb,
      interrupted boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL,
      PRIMARY KEY (conversation_id, seq),
      UNIQUE (turn_id, role)
    )`
  // One row per turn, kept when the conversation is deleted: what each key used, for accounting.
  yield* sql`
    CREATE TABLE usage (
      turn_id uuid PRIMARY KEY,
      request_id text NOT NULL,
      owner text NOT NULL,
      conversation_id uuid NOT NULL,
      model text NOT NULL,
      prompt_tokens integer NOT NULL CHECK (prompt_tokens >= 0),
      completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
      time_to_first_token_ms double precision,
      duration_ms double precision NOT NULL,
      status text NOT NULL CHECK (status IN ('completed', 'interrupted')),
      finish_reason text NOT NULL,
      created_at timestamptz NOT NULL
    )`
  // Usage per key over a period; a request's row from its X-Request-Id.
  yield* sql`CREATE INDEX usage_by_owner ON usage (owner, created_at)`
  yield* sql`CREATE INDEX usage_by_request ON usage (request_id)`
})

/**
 * Managed API keys (`src/Keys.ts`): never the key itself, only its SHA-256 (hex), which is what a request's key is
 * looked up by. `prefix` is the start of the key, shown in listings so that a person can tell keys apart. A limit
 * left NULL follows the server's default (RATE_LIMIT_*); 0 is unlimited. A revoked key keeps its row.
 */
const apiKeys = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE api_keys (
      id text PRIMARY KEY,
      name text NOT NULL,
      prefix text NOT NULL UNIQUE,
      key_hash text NOT NULL UNIQUE,
      requests_per_minute integer CHECK (requests_per_minute >= 0),
      tokens_per_minute integer CHECK (tokens_per_minute >= 0),
      concurrency integer CHECK (concurrency >= 0),
      created_at timestamptz NOT NULL,
      last_used_at timestamptz,
      revoked_at timestamptz
    )`
})

/**
 * Writes turns (a JSON array, in order) in one statement: one round trip per batch rather than five per turn, which
 * is what keeps the embedded PGlite (on Nexxi's own event loop) ahead of a busy server. Per turn, as before: the
 * usage row is claimed by its turn id (a turn written before is skipped), the conversation is created or locked
 * (a deleted one, or another owner's, keeps the usage only), and the two messages take the next `seq`. A
 * PL/pgSQL statement sees the rows committed before it, as a statement sent by the client would.
 */
const recordTurns = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
    CREATE FUNCTION nexxi_record_turns(turns jsonb) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
      t jsonb;
      last_seq integer;
    BEGIN
      FOR t IN SELECT value FROM jsonb_array_elements(turns) LOOP
        INSERT INTO usage (turn_id, request_id, owner, conversation_id, model, prompt_tokens, completion_tokens,
                           time_to_first_token_ms, duration_ms, status, finish_reason, created_at)
        VALUES ((t->>'turn_id')::uuid, t->>'request_id', t->>'owner', (t->>'conversation_id')::uuid, t->>'model',
                (t->>'prompt_tokens')::integer, (t->>'completion_tokens')::integer,
                (t->>'time_to_first_token_ms')::double precision, (t->>'duration_ms')::double precision,
                t->>'status', t->>'finish_reason', (t->'user'->>'created_at')::timestamptz)
        ON CONFLICT (turn_id) DO NOTHING;
        CONTINUE WHEN NOT FOUND OR NOT (t->>'keep_transcript')::boolean;
        INSERT INTO conversations (id, owner, title, created_at, updated_at)
        VALUES ((t->>'conversation_id')::uuid, t->>'owner', t->>'title', (t->'user'->>'created_at')::timestamptz,
                (t->'reply'->>'created_at')::timestamptz)
        ON CONFLICT (id) DO UPDATE SET updated_at = GREATEST(conversations.updated_at, EXCLUDED.updated_at)
        WHERE conversations.owner = EXCLUDED.owner AND conversations.deleted_at IS NULL;
        CONTINUE WHEN NOT FOUND;
        SELECT COALESCE(MAX(seq), 0) INTO last_seq FROM messages WHERE conversation_id = (t->>'conversation_id')::uuid;
        INSERT INTO messages (conversation_id, seq, turn_id, role, content, tokens, safety_action, safety_categories,
                              interrupted, created_at)
        VALUES ((t->>'conversation_id')::uuid, last_seq + 1, (t->>'turn_id')::uuid, t->'user'->>'role',
                t->'user'->>'content', (t->'user'->>'tokens')::integer, t->>'safety_action',
                NULLIF(t->'safety_categories', 'null'::jsonb), (t->'user'->>'interrupted')::boolean,
                (t->'user'->>'created_at')::timestamptz),
               ((t->>'conversation_id')::uuid, last_seq + 2, (t->>'turn_id')::uuid, t->'reply'->>'role',
                t->'reply'->>'content', (t->'reply'->>'tokens')::integer, NULL, NULL,
                (t->'reply'->>'interrupted')::boolean, (t->'reply'->>'created_at')::timestamptz)
        ON CONFLICT DO NOTHING;
      END LOOP;
    END
    $$`)
})

/** Every migration, by `<id>_<name>`; ids increase. */
export const migrations = {
  "1_initial": initial,
  "2_api_keys": apiKeys,
  "3_record_turns": recordTurns
}

/**
 * Applies the migrations not applied yet, one run at a time across every replica; returns those applied here.
 * Everything, the lock included, happens in one transaction: a failed run leaves the schema as it was.
 */
export const migrate = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`
      // The migrator creates its table when a probe of it fails, which would abort this transaction: create it
      // first (with the migrator's own definition), under the lock.
      yield* sql`
        CREATE TABLE IF NOT EXISTS ${sql(MIGRATIONS_TABLE)} (
          migration_id integer PRIMARY KEY,
          created_at timestamp with time zone NOT NULL DEFAULT now(),
          name text NOT NULL
        )`
      return yield* PgMigrator.run({ loader: PgMigrator.fromRecord(migrations), table: MIGRATIONS_TABLE })
    })
  )
}).pipe(Effect.provide(NodeContext.layer), Effect.withSpan("Storage.migrate"))
