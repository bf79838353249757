/**
 * Session: the conversation memory of each chat, so that the next turn sees the earlier ones. A session belongs
 * to the caller that created it: for anyone else it does not exist. The embedded default keeps sessions in
 * memory, bounded in count and in messages per session, and forgets them after a TTL of inactivity.
 */
import { Clock, Effect, Option } from "effect"
import { AppConfig } from "./AppConfig.js"
import { ClientError, retryAfter } from "./Domain/Errors.js"
import type { DependencyHealth } from "./Domain/Health.js"
import type { ChatMessage, SessionId } from "./Domain/Session.js"

export class SessionNotFound extends ClientError<SessionNotFound>()(
  "SessionNotFound",
  404,
  "No such session for this API key"
) {}

export class SessionUnavailable extends ClientError<SessionUnavailable>()(
  "SessionUnavailable",
  503,
  "The session store cannot be reached",
  retryAfter
) {}

export interface SessionShape {
  /** The messages of a session, oldest first; none when it is unknown, expired or another caller's. */
  readonly history: (
    owner: string,
    id: SessionId
  ) => Effect.Effect<Option.Option<ReadonlyArray<ChatMessage>>, SessionUnavailable>
  /** Appends messages atomically (a reader never sees half a turn), creating the session if needed. */
  readonly append: (
    owner: string,
    id: SessionId,
    messages: ReadonlyArray<ChatMessage>
  ) => Effect.Effect<void, SessionUnavailable>
  /** Forgets a session; false when there was nothing (for this caller) to forget. */
  readonly remove: (owner: string, id: SessionId) => Effect.Effect<boolean, SessionUnavailable>
  readonly readiness: Effect.Effect<DependencyHealth>
}

interface StoredSession {
  readonly owner: string
  messages: ReadonlyArray<ChatMessage>
  expiresAt: number
}

export interface MemoryLimits {
  readonly ttlMillis: number
  readonly maxSessions: number
  readonly maxMessages: number
}

/** In-process sessions: a Map kept in least-recently-used order, so the oldest session is evicted first. */
export const makeMemorySessions = (limits: MemoryLimits): SessionShape => {
  const sessions = new Map<SessionId, StoredSession>()

  const live = (owner: string, id: SessionId, now: number): StoredSession | undefined => {
    const session = sessions.get(id)
    if (session === undefined) return undefined
    if (session.expiresAt <= now) {
      sessions.delete(id)
      return undefined
    }
    return session.owner === owner ? session : undefined
  }

  const touch = (id: SessionId, session: StoredSession, now: number) => {
    session.expiresAt = now + limits.ttlMillis
    sessions.delete(id)
    sessions.set(id, session)
  }

  return {
    history: (owner, id) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const session = live(owner, id, now)
        if (session === undefined) return Option.none()
        touch(id, session, now)
        return Option.some(session.messages)
      }),
    append: (owner, id, messages) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const existing = sessions.get(id)
        if (existing !== undefined && existing.owner !== owner && existing.expiresAt > now) {
          // Ids are random UUIDs: a collision with another caller's live session is an attack or a bug.
          return Effect.die(new Error("session id belongs to another caller"))
        }
        const session = live(owner, id, now) ?? { owner, messages: [], expiresAt: 0 }
        session.messages = [...session.messages, ...messages].slice(-limits.maxMessages)
        touch(id, session, now)
        for (const oldest of sessions.keys()) {
          if (sessions.size <= limits.maxSessions) break
          sessions.delete(oldest)
        }
        return Effect.void
      }),
    remove: (owner, id) =>
      Effect.map(Clock.currentTimeMillis, (now) => live(owner, id, now) !== undefined && sessions.delete(id)),
    readiness: Effect.succeed({ status: "embedded", kind: "memory" })
  }
}

export class Session extends Effect.Service<Session>()("nexxi/Session", {
  effect: Effect.map(AppConfig, (config) =>
    makeMemorySessions({
      ttlMillis: config.sessionTtlSeconds * 1000,
      maxSessions: config.sessionMaxSessions,
      maxMessages: config.sessionMaxMessages
    })
  )
}) {}
