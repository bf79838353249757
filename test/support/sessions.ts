/** Session data for store tests: numbered ids and turns whose every field is distinct. */
import { DateTime } from "effect"
import { type SessionId, SessionMessage, Turn } from "../../src/Domain/Session.js"

export const sessionId = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}` as SessionId

export const turn = (n: number) =>
  new Turn({
    user: new SessionMessage({ role: "user", content: `u${n}`, created_at: DateTime.unsafeMake(n * 1000), tokens: n }),
    assistant: new SessionMessage({
      role: "assistant",
      content: `a${n}`,
      created_at: DateTime.unsafeMake(n * 1000 + 500),
      interrupted: n % 2 === 0,
      tokens: n + 1
    })
  })
