/**
 * Storage in PostgreSQL (a server, or the embedded PGlite: the same SQL) through `@effect/sql-pg`.
 *
 * A turn is written in a transaction (its own, or one for a batch of the turns waiting) keyed by a turn id given
 * when it is queued, so that a retry after an ambiguous failure stores it once: its usage row is inserted first
 * (`ON CONFLICT DO NOTHING`) and decides whether the rest is still to be written. Deleting a conversation removes
 * its messages and title but keeps a row marking it deleted, so that a turn of it still queued (here or on another
 * replica) cannot bring it back.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Cause, Clock, DateTime, Duration, Effect, Metric, MetricBoundaries, Option, Schema, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import { StartupError } from "../AppConfig.js"
import type { DependencyHealth } from "../Domain/Health.js"
import { Role, SessionId, SessionMessage } from "../Domain/Session.js"
import {
  type Conversation,
  type ConversationSummary,
  decodeCursor,
  encodeCursor,
  StorageUnavailable,
  type StorageShape,
  titleOf,
  type TurnRecord
} from "../Storage.js"
import { migrate } from "./Migrations.js"
import { makeWriteQueue, storageWriteRetry, WriteFailed } from "./WriteQueue.js"

export const writeDuration = Metric.histogram(
  "nexxi_storage_write_duration_seconds",
  MetricBoundaries.fromIterable([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  "Time of one successful write to the database: one transaction, of one turn (its messages and usage) or of a " +
    "batch of turns waiting together."
)

export interface PostgresStorageOptions {
  /** What `/ready` calls it: a PostgreSQL server, or the embedded PGlite. */
  readonly kind: "postgres" | "pglite"
  readonly queueSize: number
  readonly retryMaxDelayMillis: number
  /** Bounds every database call (and each attempt of a write). */
  readonly timeoutMillis: number
  readonly flushTimeoutMillis: number
}

/** A queued turn, with the id that makes its write idempotent. */
interface QueuedTurn {
  readonly turnId: string
  readonly turn: TurnRecord
}

/** SQLSTATE classes of errors caused by the data itself (22: data exception, 23: integrity): retrying cannot help. */
const PERMANENT_SQLSTATE_CLASSES: ReadonlyArray<string> = ["22", "23"]

const sqlStateOf = (error: unknown): string | undefined => {
  for (let current = error, depth = 0; current instanceof Object && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

const describeError = (error: unknown): string => {
  const parts: Array<string> = []
  for (let current = error, depth = 0; current instanceof Object && depth < 5; depth++) {
    const message = (current as { message?: unknown }).message
    const code = (current as { code?: unknown }).code
    if (typeof message === "string" && message.length > 0) parts.push(message)
    else if (typeof code === "string") parts.push(code)
    current = (current as { cause?: unknown }).cause
  }
  return parts.length > 0 ? [...new Set(parts)].join(": ") : String(error)
}

/**
 * Any failure of an attempt (a SQL error, a commit that died with its connection, a timeout) is transient unless
 * the database rejected the data: the write is retried, and written once thanks to its turn id.
 */
const toWriteFailed = (cause: Cause.Cause<unknown>): WriteFailed => {
  const error = Cause.squash(cause)
  const state = sqlStateOf(error)
  const permanent = state !== undefined && PERMANENT_SQLSTATE_CLASSES.includes(state.slice(0, 2))
  return new WriteFailed({ transient: !permanent, message: describeError(error), cause: error })
}

const ConversationRow = Schema.Struct({
  id: SessionId,
  title: Schema.String,
  created_at: Schema.DateTimeUtcFromDate,
  updated_at: Schema.DateTimeUtcFromDate
})

const MessageRow = Schema.Struct({
  role: Role,
  content: Schema.String,
  tokens: Schema.Int,
  interrupted: Schema.Boolean,
  created_at: Schema.DateTimeUtcFromDate
})

const decodeConversations = Schema.decodeUnknown(Schema.Array(ConversationRow))
const decodeMessages = Schema.decodeUnknown(Schema.Array(MessageRow))

const toSummary = (row: typeof ConversationRow.Type): ConversationSummary => ({
  id: row.id,
  title: row.title,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

const toDate = DateTime.toDateUtc

/**
 * The Storage service on the `PgClient` in context: applies the migrations, then serves. Fails to start (one line
 * saying why) when the database cannot be prepared.
 */
export const makePostgresStorage = (
  options: PostgresStorageOptions
): Effect.Effect<StorageShape, StartupError, PgClient.PgClient | Scope.Scope> =>
  Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    const timeout = Duration.millis(options.timeoutMillis)

    const applied = yield* migrate.pipe(
      Effect.provideService(PgClient.PgClient, sql),
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.catchAllCause((cause) =>
        Effect.fail(
          new StartupError({
            message: `cannot prepare the ${options.kind === "pglite" ? "embedded PGlite" : "PostgreSQL"} database: ${describeError(Cause.squash(cause))}`
          })
        )
      )
    )
    if (applied.length > 0) {
      yield* Effect.logInfo(`Storage: applied migrations ${applied.map(([id, name]) => `${id}_${name}`).join(", ")}`)
    }

    /** Reads and deletes answer 503 while the database is unreachable; the cause is logged, not sent. */
    const unavailable = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) =>
      effect.pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new Error(`no answer within ${Duration.format(timeout)}`)
        }),
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause as Cause.Cause<never>)
            : Effect.zipRight(
                Effect.logWarning(`Storage: ${operation} failed: ${describeError(Cause.squash(cause))}`),
                Effect.fail(
                  new StorageUnavailable({
                    message: "The conversation store is unavailable; retry later",
                    retry_after_seconds: 5
                  })
                )
              )
        ),
        Effect.withSpan(`Storage.${operation}`)
      )

    // --- Writes --------------------------------------------------------------------------------------------------

    /** A turn as `nexxi_record_turns` (migration 3) reads it. */
    const turnJson = ({ turnId, turn }: QueuedTurn) => {
      const message = (message: SessionMessage) => ({
        role: message.role,
        content: message.content,
        tokens: message.tokens,
        interrupted: message.interrupted,
        created_at: DateTime.formatIso(message.created_at)
      })
      return {
        turn_id: turnId,
        request_id: turn.requestId,
        owner: turn.owner,
        conversation_id: turn.sessionId,
        model: turn.model,
        prompt_tokens: turn.promptTokens,
        completion_tokens: turn.completionTokens,
        time_to_first_token_ms: Option.getOrNull(turn.timeToFirstTokenMs),
        duration_ms: turn.durationMs,
        status: turn.finishReason === "interrupted" ? "interrupted" : "completed",
        finish_reason: turn.finishReason,
        keep_transcript: turn.keepTranscript !== false,
        title: titleOf(turn.userMessage.content),
        safety_action: turn.safety?.action ?? null,
        safety_categories: turn.safety?.categories ?? null,
        user: message(turn.userMessage),
        reply: message(turn.reply)
      }
    }

    /**
     * One attempt: the turns in order, in one statement (one transaction), so that those of one conversation get
     * their `seq` one after the other. Bounded in time even when the connection hangs (the abandoned attempt ends on
     * its own); a batch that fails is written again turn by turn by the queue.
     */
    const attempt = (batch: ReadonlyArray<QueuedTurn>) =>
      Effect.gen(function* () {
        const start = yield* Clock.currentTimeNanos
        yield* sql`SELECT nexxi_record_turns(${JSON.stringify(batch.map(turnJson))}::jsonb)`.pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause as Cause.Cause<never>)
              : Effect.fail(toWriteFailed(cause))
          ),
          Effect.disconnect,
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new WriteFailed({ transient: true, message: `no answer within ${Duration.format(timeout)}` })
          })
        )
        const seconds = Number((yield* Clock.currentTimeNanos) - start) / 1e9
        yield* Metric.update(writeDuration, seconds)
      })

    const writeOne = (queued: QueuedTurn) =>
      attempt([queued]).pipe(
        Effect.withSpan("Storage.writeTurn", { attributes: { "nexxi.request_id": queued.turn.requestId } })
      )

    /** A deadlock with another replica's batch is a failed attempt like any other. */
    const writeBatch = (batch: ReadonlyArray<QueuedTurn>) =>
      attempt(batch).pipe(
        Effect.withSpan("Storage.writeTurns", { attributes: { "nexxi.storage.batch_size": batch.length } })
      )

    // Turns accepted and not yet written, by conversation: a deletion must count them as existing.
    const pendingByConversation = new Map<string, number>()
    const conversationKey = (owner: string, id: SessionId) => `${owner}\n${id}`
    const countPending = (turn: TurnRecord, delta: number) => {
      const key = conversationKey(turn.owner, turn.sessionId)
      const count = (pendingByConversation.get(key) ?? 0) + delta
      if (count > 0) pendingByConversation.set(key, count)
      else pendingByConversation.delete(key)
    }

    const queue = yield* makeWriteQueue<QueuedTurn>({
      capacity: options.queueSize,
      write: writeOne,
      writeBatch,
      retry: storageWriteRetry(Duration.millis(options.retryMaxDelayMillis)),
      flushTimeout: Duration.millis(options.flushTimeoutMillis),
      describe: ({ turnId, turn }) => ({
        request_id: turn.requestId,
        turn_id: turnId,
        conversation_id: turn.sessionId,
        owner: turn.owner
      }),
      settled: ({ turn }) => countPending(turn, -1)
    })

    const full = new StorageUnavailable({
      message: "Too many conversation turns are waiting to be stored; retry later",
      retry_after_seconds: 5
    })

    // --- Reads and deletes ---------------------------------------------------------------------------------------

    const deleteStored = (owner: string, id: SessionId) =>
      sql.withTransaction(
        Effect.gen(function* () {
          const now = toDate(yield* DateTime.now)
          // A row marking the conversation deleted, also when none is stored yet: its turns may still be queued.
          const rows = yield* sql<{ readonly inserted: boolean }>`
            INSERT INTO conversations (id, owner, title, created_at, updated_at, deleted_at)
            VALUES (${id}, ${owner}, NULL, ${now}, ${now}, ${now})
            ON CONFLICT (id) DO UPDATE
              SET title = NULL, deleted_at = EXCLUDED.deleted_at, updated_at = EXCLUDED.updated_at
            WHERE conversations.owner = EXCLUDED.owner AND conversations.deleted_at IS NULL
            RETURNING (xmax = 0) AS inserted`
          const existed = rows[0] !== undefined && !rows[0].inserted
          if (existed) yield* sql`DELETE FROM messages WHERE conversation_id = ${id}`
          return existed
        })
      )

    const listPage = (owner: string, limit: number, after: Option.Option<{ createdAt: DateTime.Utc; id: SessionId }>) =>
      Option.match(after, {
        onNone: () => sql`
          SELECT id, title, created_at, updated_at FROM conversations
          WHERE owner = ${owner} AND deleted_at IS NULL
          ORDER BY created_at DESC, id DESC
          LIMIT ${limit + 1}`,
        onSome: (position) => sql`
          SELECT id, title, created_at, updated_at FROM conversations
          WHERE owner = ${owner} AND deleted_at IS NULL
            AND (created_at, id) < (${toDate(position.createdAt)}, ${position.id})
          ORDER BY created_at DESC, id DESC
          LIMIT ${limit + 1}`
      })

    /** `SELECT 1` within a second, and the queue: a replica that would refuse new turns is not ready either. */
    const readiness: Effect.Effect<DependencyHealth> = Effect.gen(function* () {
      // The reason is logged by the failing writes; /ready is public and says no more than this.
      const unreachable = yield* sql`SELECT 1`.pipe(
        Effect.timeoutFail({ duration: "1 second", onTimeout: () => "no answer to SELECT 1 within 1s" }),
        Effect.as(Option.none<string>()),
        Effect.catchAll((error) => Effect.succeed(Option.some(typeof error === "string" ? error : "SELECT 1 failed")))
      )
      const pending = yield* queue.pending
      const waiting = pending > 0 ? [`${pending} turn(s) waiting to be written`] : []
      if (Option.isSome(unreachable)) {
        return { status: "down", kind: options.kind, detail: [unreachable.value, ...waiting].join("; ") }
      }
      if (yield* queue.isFull) {
        return { status: "down", kind: options.kind, detail: ["write queue full", ...waiting].join("; ") }
      }
      const status = options.kind === "pglite" ? "embedded" : "up"
      return waiting.length === 0 ? { status, kind: options.kind } : { status, kind: options.kind, detail: waiting[0] }
    })

    return {
      admit: Effect.flatMap(queue.isFull, (isFull) => (isFull ? Effect.fail(full) : Effect.void)),
      recordTurn: (turn) =>
        Effect.suspend(() => {
          countPending(turn, 1)
          return queue.offer({ turnId: randomUUID(), turn })
        }),
      deleteConversation: (owner, id) =>
        Effect.map(
          unavailable("deleteConversation", deleteStored(owner, id)),
          (existed) => existed || pendingByConversation.has(conversationKey(owner, id))
        ),
      listConversations: (owner, page) =>
        Effect.gen(function* () {
          const after = Option.isSome(page.cursor) ? Option.some(yield* decodeCursor(page.cursor.value)) : Option.none()
          const rows = yield* unavailable("listConversations", listPage(owner, page.limit, after))
          const conversations = (yield* Effect.orDie(decodeConversations(rows))).map(toSummary)
          const shown = conversations.slice(0, page.limit)
          const last = shown.at(-1)
          return {
            conversations: shown,
            nextCursor:
              conversations.length > page.limit && last !== undefined ? Option.some(encodeCursor(last)) : Option.none()
          }
        }),
      conversation: (owner, id) =>
        Effect.gen(function* () {
          // One statement, so one snapshot: the conversation as of its latest stored turn, with that turn.
          const rows = yield* unavailable(
            "conversation",
            sql`
              SELECT c.id, c.title, c.created_at, c.updated_at, m.role AS message_role,
                     m.content AS message_content, m.tokens AS message_tokens,
                     m.interrupted AS message_interrupted, m.created_at AS message_created_at
              FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
              WHERE c.id = ${id} AND c.owner = ${owner} AND c.deleted_at IS NULL
              ORDER BY m.seq`
          )
          const [row] = yield* Effect.orDie(decodeConversations(rows))
          if (row === undefined) return Option.none<Conversation>()
          const messageRows = rows
            .filter((message) => message.message_role !== null)
            .map((message) => ({
              role: message.message_role,
              content: message.message_content,
              tokens: message.message_tokens,
              interrupted: message.message_interrupted,
              created_at: message.message_created_at
            }))
          const messages = (yield* Effect.orDie(decodeMessages(messageRows))).map(
            (message) => new SessionMessage(message)
          )
          return Option.some({ ...toSummary(row), messages })
        }),
      readiness
    } satisfies StorageShape
  })
