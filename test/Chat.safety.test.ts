/** The safety policy around a chat turn: what the model, the client, the session, storage and the logs see. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Storage } from "../src/Storage.js"
import { recordingGenerator } from "./support/generators.js"
import { startTestServer, TEST_API_KEY } from "./support/server.js"
import { readSse } from "./support/sse.js"

const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)
const EMAIL = "ada.lovelace@example.org"
// A token split over three chunks: no single chunk looks like a secret.
const SECRET_PARTS = ["Your key is ghp_", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r", "8 keep it safe."]

describe("safety policy in a chat turn", () => {
  it.scopedLive("by default the model sees the email, storage gets [EMAIL], and no log line has it", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["Noted."])
      const storage = Storage.Test()
      const server = yield* startTestServer({ generator: generator.layer, storage: storage.layer })
      const message = `Please write to ${EMAIL} tomorrow`
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message } }))
      expect(response.status).toBe(200)
      expect(generator.requests[0]!.messages.at(-1)!.content).toBe(message)
      expect(storage.turns[0]!.userMessage.content).toBe("Please write to [EMAIL] tomorrow")
      expect(server.logs.join("\n")).not.toContain(EMAIL)
      expect(server.logs.join("\n")).not.toContain(TEST_API_KEY)
    })
  )

  it.scopedLive("with PII_REDACT_PROMPT=true the model never sees the email, in this turn or later ones", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["Noted."])
      const server = yield* startTestServer({ generator: generator.layer, env: { PII_REDACT_PROMPT: "true" } })
      const first = yield* call(() =>
        server.request("/v1/chat", { method: "POST", json: { message: `My email is ${EMAIL}` } }).then((r) => r.json())
      )
      yield* call(() =>
        server.request("/v1/chat", {
          method: "POST",
          json: { session_id: (first as any).session_id, message: "What is it?" }
        })
      )
      const seen = JSON.stringify(generator.requests.map((request) => request.messages))
      expect(seen).not.toContain(EMAIL)
      expect(seen).toContain("My email is [EMAIL]")
    })
  )

  it.scopedLive("with SAFETY_OUTPUT_REDACT=true a secret split across tokens reaches the client redacted", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(SECRET_PARTS)
      const storage = Storage.Test()
      const server = yield* startTestServer({
        generator: generator.layer,
        storage: storage.layer,
        env: { SAFETY_OUTPUT_REDACT: "true" }
      })
      const response = yield* call(() =>
        server.request("/v1/chat/stream", { method: "POST", json: { message: "What is my key?" } })
      )
      const chunks = (yield* call(readSse(response).rest)).map((event) => JSON.parse(event.data))
      const text = chunks.map((chunk) => chunk.delta).join("")
      expect(text).toBe("Your key is [SECRET] keep it safe.")
      expect(chunks.at(-1)).toMatchObject({ finished: true })
      expect(storage.turns[0]!.reply.content).not.toContain("ghp_")
    })
  )
})
