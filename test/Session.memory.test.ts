import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Option, TestClock } from "effect"
import { ChatMessage, type SessionId } from "../src/Domain/Session.js"
import { makeMemorySessions } from "../src/Session.js"

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}` as SessionId
const message = (content: string, role: "user" | "assistant" = "user") =>
  new ChatMessage({ role, content, created_at: DateTime.unsafeMake(0) })
const contents = (found: Option.Option<ReadonlyArray<ChatMessage>>) =>
  Option.map(found, (messages) => messages.map((m) => m.content))

describe("in-memory sessions", () => {
  const limits = { ttlMillis: 60_000, maxSessions: 3, maxMessages: 4 }

  it.effect("keeps a session's messages in order, for its owner only", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      yield* sessions.append("alice", id(1), [message("hi"), message("hello", "assistant")])
      yield* sessions.append("alice", id(1), [message("again")])
      expect(contents(yield* sessions.history("alice", id(1)))).toEqual(Option.some(["hi", "hello", "again"]))
      expect(yield* sessions.history("bob", id(1))).toEqual(Option.none())
      expect(yield* sessions.remove("bob", id(1))).toBe(false)
      expect(yield* sessions.remove("alice", id(1))).toBe(true)
      expect(yield* sessions.history("alice", id(1))).toEqual(Option.none())
    })
  )

  it.effect("forgets a session after its TTL of inactivity, and each use extends it", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      yield* sessions.append("alice", id(1), [message("hi")])
      yield* TestClock.adjust(59_000)
      expect(Option.isSome(yield* sessions.history("alice", id(1)))).toBe(true)
      yield* TestClock.adjust(59_000)
      expect(Option.isSome(yield* sessions.history("alice", id(1)))).toBe(true)
      yield* TestClock.adjust(60_000)
      expect(yield* sessions.history("alice", id(1))).toEqual(Option.none())
    })
  )

  it.effect("keeps at most maxMessages per session, dropping the oldest", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      for (const n of [1, 2, 3, 4, 5, 6]) yield* sessions.append("alice", id(1), [message(`m${n}`)])
      expect(contents(yield* sessions.history("alice", id(1)))).toEqual(Option.some(["m3", "m4", "m5", "m6"]))
    })
  )

  it.effect("keeps at most maxSessions, evicting the least recently used", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      for (const n of [1, 2, 3]) yield* sessions.append("alice", id(n), [message(`s${n}`)])
      yield* sessions.history("alice", id(1)) // 1 is now the most recently used
      yield* sessions.append("alice", id(4), [message("s4")])
      expect(yield* sessions.history("alice", id(2))).toEqual(Option.none())
      for (const n of [1, 3, 4]) expect(Option.isSome(yield* sessions.history("alice", id(n)))).toBe(true)
    })
  )
})
