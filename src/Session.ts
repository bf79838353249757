/**
 * Session: the conversation memory of each chat, so that the next turn sees the earlier ones. A session is a list
 * of whole turns (a user message and its reply, each with its token count) that belongs to the API key that
 * created it: for any other key it does not exist. It is forgotten after `SESSION_TTL_SECONDS` without use and
 * keeps at most `SESSION_MAX_TURNS` turns. One request at a time works on a session: see `lock`.
 *
 * Two backends, chosen by `SessionLive` (`Session/Live.ts`): Redis when `REDIS_URL` is set (`Session/Redis.ts`),
 * else process memory (`Session/Memory.ts`).
 */
import { Context, Effect, type Option, type Scope } from "effect"
import { ClientError, retryAfter } from "./Domain/Errors.js"
import type { DependencyHealth } from "./Domain/Health.js"
import type { SessionId, Turn } from "./Domain/Session.js"
import { onScopeClose } from "./lib/finalizer.js"

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

export class SessionBusy extends ClientError<SessionBusy>()(
  "SessionBusy",
  409,
  "Another request is working on this session; retry when it has finished"
) {}

export interface SessionShape {
  /** The turns of a session, oldest first, and a fresh TTL; none when it is unknown, expired or another key's. */
  readonly history: (
    owner: string,
    id: SessionId
  ) => Effect.Effect<Option.Option<ReadonlyArray<Turn>>, SessionUnavailable>
  /**
   * Appends a turn atomically (a reader never sees half of it), creating the session if needed, refreshing its TTL
   * and dropping its oldest turns beyond the maximum.
   */
  readonly append: (owner: string, id: SessionId, turn: Turn) => Effect.Effect<void, SessionUnavailable>
  /** Forgets a session; false when there was nothing (for this owner) to forget. */
  readonly remove: (owner: string, id: SessionId) => Effect.Effect<boolean, SessionUnavailable>
  /**
   * Holds the session's lock until the scope closes. Waits up to `SESSION_LOCK_TIMEOUT_MS` for another holder to
   * finish, then fails with `SessionBusy`.
   */
  readonly lock: (owner: string, id: SessionId) => Effect.Effect<void, SessionBusy | SessionUnavailable, Scope.Scope>
  readonly readiness: Effect.Effect<DependencyHealth>
}

export class Session extends Context.Tag("nexxi/Session")<Session, SessionShape>() {}

/**
 * A lock held for the current scope, common to every backend. The release (which must only free the lock if this
 * holder has it) is registered before the first attempt, so that an attempt that took the lock just as it timed out
 * or was interrupted cannot leave it taken. A free lock is taken by one attempt; only a taken one is waited for,
 * under the timeout (which runs the wait in fibers of its own: about a third of a millisecond that an uncontended
 * turn does not pay).
 */
export const holdLock = (options: {
  readonly id: SessionId
  /** One attempt: true when it took the lock. */
  readonly tryTake: Effect.Effect<boolean, SessionUnavailable>
  /** Waits until the lock is free and takes it. */
  readonly take: Effect.Effect<void, SessionUnavailable>
  readonly release: Effect.Effect<void>
  readonly timeoutMillis: number
}): Effect.Effect<void, SessionBusy | SessionUnavailable, Scope.Scope> =>
  Effect.zipRight(
    onScopeClose(() => options.release),
    Effect.flatMap(options.tryTake, (taken) =>
      taken
        ? Effect.void
        : options.take.pipe(
            Effect.timeoutFail({
              duration: options.timeoutMillis,
              onTimeout: () =>
                new SessionBusy({
                  message: `Session ${options.id} is busy with another request; retry when that one has finished`
                })
            })
          )
    )
  )
