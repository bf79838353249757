/**
 * Storage: the durable record of every conversation and of every request's usage, kept after the session store
 * forgets a conversation. PostgreSQL (`DATABASE_URL`), or the same code on an embedded PGlite, implements it
 * (`Storage/Postgres.ts`, chosen by `Storage/Live.ts`); process memory (`Storage.Test`) is for tests.
 *
 * Writes are queued: a turn is accepted at once and written in the background, retried through database outages.
 * `admit` tells a new request whether there is room for its turn; `recordTurn` waits for room rather than drop one.
 */
import { Context, DateTime, Effect, Either, Layer, Option, Schema } from "effect"
import { ClientError, retryAfter, ValidationError } from "./Domain/Errors.js"
import type { DependencyHealth } from "./Domain/Health.js"
import { SessionId, type SessionMessage } from "./Domain/Session.js"
import type { FinishReason } from "./Generator.js"
import type { SafetyAction } from "./Safety.js"

export class StorageUnavailable extends ClientError<StorageUnavailable>()(
  "StorageUnavailable",
  503,
  "The conversation store is unreachable, or has too many turns waiting to be written; retry later",
  retryAfter
) {}

export class ConversationNotFound extends ClientError<ConversationNotFound>()(
  "ConversationNotFound",
  404,
  "No such conversation for this API key"
) {}

/** What the safety filter decided about the user's message, kept with it. */
export interface StoredVerdict {
  readonly action: SafetyAction
  readonly categories: Readonly<Record<string, number>>
}

/** One chat turn: the user's message, the reply (possibly cut short) and what it cost. */
export interface TurnRecord {
  readonly requestId: string
  readonly owner: string
  readonly sessionId: SessionId
  readonly model: string
  /** With its token count, as the session store keeps it. */
  readonly userMessage: SessionMessage
  readonly reply: SessionMessage
  readonly finishReason: FinishReason
  readonly promptTokens: number
  readonly completionTokens: number
  readonly timeToFirstTokenMs: Option.Option<number>
  readonly durationMs: number
  /** The safety filter's verdict on the user's message; not stored when absent. */
  readonly safety?: StoredVerdict
  /** False for a stateless turn stored for its usage only: no conversation, no messages. Default true. */
  readonly keepTranscript?: boolean
}

export interface ConversationSummary {
  readonly id: SessionId
  /** From the conversation's first message. */
  readonly title: string
  readonly createdAt: DateTime.Utc
  readonly updatedAt: DateTime.Utc
}

export interface Conversation extends ConversationSummary {
  /** Oldest first. */
  readonly messages: ReadonlyArray<SessionMessage>
}

export interface PageRequest {
  /** Where the previous page ended (its `nextCursor`); none for the first page. */
  readonly cursor: Option.Option<string>
  readonly limit: number
}

export interface ConversationPage {
  readonly conversations: ReadonlyArray<ConversationSummary>
  /** Present when there may be more. */
  readonly nextCursor: Option.Option<string>
}

export interface StorageShape {
  /** Fails when the write queue is full, so that a new turn is refused (503) rather than lost: call before generating. */
  readonly admit: Effect.Effect<void, StorageUnavailable>
  /** Queues the turn to be written: returns at once, or when there is room. Writing it twice stores it once. */
  readonly recordTurn: (turn: TurnRecord) => Effect.Effect<void, StorageUnavailable>
  /**
   * Deletes a conversation's stored messages and title (its usage stays, for accounting), including turns still
   * waiting to be written; false when this caller has none with that id.
   */
  readonly deleteConversation: (owner: string, id: SessionId) => Effect.Effect<boolean, StorageUnavailable>
  /** The owner's conversations, newest (created) first; a page does not shift when new ones arrive. */
  readonly listConversations: (
    owner: string,
    page: PageRequest
  ) => Effect.Effect<ConversationPage, StorageUnavailable | ValidationError>
  /** A conversation with its whole transcript; none when it is unknown, deleted or another owner's. */
  readonly conversation: (
    owner: string,
    id: SessionId
  ) => Effect.Effect<Option.Option<Conversation>, StorageUnavailable>
  readonly readiness: Effect.Effect<DependencyHealth>
}

export class Storage extends Context.Tag("nexxi/Storage")<Storage, StorageShape>() {
  /** Memory storage whose turns a test can read back. */
  static readonly Test = () => {
    const { storage, turns } = makeMemoryStorage()
    return { layer: Layer.succeed(Storage, storage), turns }
  }
}

// --- Shared by every backend ------------------------------------------------------------------------------------

export const TITLE_MAX_CHARS = 80

/** A conversation's title: its first message on one line, cut (at a character, not a UTF-16 unit) when long. */
export const titleOf = (message: string): string => {
  const line = message.replace(/\s+/g, " ").trim()
  const chars = [...line]
  return chars.length <= TITLE_MAX_CHARS
    ? line
    : chars
        .slice(0, TITLE_MAX_CHARS - 1)
        .join("")
        .trimEnd() + "…"
}

/** Where a page ended: the last conversation's creation time and id (the listing's sort key). */
export interface PagePosition {
  readonly createdAt: DateTime.Utc
  readonly id: SessionId
}

/** Opaque to clients: base64url of `["<created_at ISO>", "<id>"]`. */
const CursorSchema = Schema.compose(
  Schema.StringFromBase64Url,
  Schema.parseJson(Schema.Tuple(Schema.DateTimeUtc, SessionId))
)

export const encodeCursor = (position: PagePosition): string =>
  Schema.encodeSync(CursorSchema)([position.createdAt, position.id])

export const decodeCursor = (cursor: string): Either.Either<PagePosition, ValidationError> =>
  Schema.decodeEither(CursorSchema)(cursor).pipe(
    Either.map(([createdAt, id]) => ({ createdAt, id })),
    Either.mapLeft(
      () => new ValidationError({ field: "cursor", message: "cursor: not a next_cursor given by this API" })
    )
  )

/** Newest first; the id breaks ties, so that the order is total and pages never overlap. */
export const isBefore = (conversation: PagePosition, position: PagePosition): boolean => {
  const order = DateTime.Order(conversation.createdAt, position.createdAt)
  return order < 0 || (order === 0 && conversation.id < position.id)
}

// --- Memory -----------------------------------------------------------------------------------------------------

interface MemoryConversation {
  readonly owner: string
  readonly summary: ConversationSummary
  readonly messages: Array<SessionMessage>
}

/** Turns kept in process memory: lost on restart, for development and tests. */
export const makeMemoryStorage = () => {
  const turns: Array<TurnRecord> = []
  const conversations = new Map<SessionId, MemoryConversation>()

  const record = (turn: TurnRecord) => {
    turns.push(turn)
    if (turn.keepTranscript === false) return
    const existing = conversations.get(turn.sessionId)
    if (existing !== undefined && existing.owner !== turn.owner) return
    const summary: ConversationSummary = existing?.summary ?? {
      id: turn.sessionId,
      title: titleOf(turn.userMessage.content),
      createdAt: turn.userMessage.created_at,
      updatedAt: turn.reply.created_at
    }
    conversations.set(turn.sessionId, {
      owner: turn.owner,
      summary: { ...summary, updatedAt: turn.reply.created_at },
      messages: [...(existing?.messages ?? []), turn.userMessage, turn.reply]
    })
  }

  const storage: StorageShape = {
    admit: Effect.void,
    recordTurn: (turn) => Effect.sync(() => record(turn)),
    deleteConversation: (owner, id) =>
      Effect.sync(() => {
        const kept = turns.filter((turn) => !(turn.owner === owner && turn.sessionId === id))
        turns.splice(0, turns.length, ...kept)
        return conversations.get(id)?.owner === owner && conversations.delete(id)
      }),
    listConversations: (owner, page) =>
      Effect.gen(function* () {
        const after = Option.isSome(page.cursor) ? Option.some(yield* decodeCursor(page.cursor.value)) : Option.none()
        const mine = [...conversations.values()]
          .filter((conversation) => conversation.owner === owner)
          .map((conversation) => conversation.summary)
          .filter((summary) => Option.isNone(after) || isBefore(summary, after.value))
          .sort((a, b) => (isBefore(a, b) ? 1 : -1))
        const shown = mine.slice(0, page.limit)
        const last = shown.at(-1)
        return {
          conversations: shown,
          nextCursor: mine.length > page.limit && last !== undefined ? Option.some(encodeCursor(last)) : Option.none()
        }
      }),
    conversation: (owner, id) =>
      Effect.sync(() =>
        Option.fromNullable(conversations.get(id)).pipe(
          Option.filter((conversation) => conversation.owner === owner),
          Option.map((conversation) => ({ ...conversation.summary, messages: [...conversation.messages] }))
        )
      ),
    readiness: Effect.succeed({ status: "embedded", kind: "memory" })
  }
  return { storage, turns: turns as ReadonlyArray<TurnRecord> }
}
