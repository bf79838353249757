/** What every client meets before any chat logic: errors, statuses, request ids, logs, health and docs. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { request as httpRequest } from "node:http"
import { Generator } from "../src/Generator.js"
import { startTestServer, TEST_API_KEY } from "./support/server.js"

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

/** POSTs a raw body (not necessarily JSON) with the API key. */
const post = (
  server: { request: (path: string, init?: RequestInit) => Promise<Response> },
  path: string,
  body: string,
  contentType = "application/json"
) => call(() => server.request(path, { method: "POST", body, headers: { "content-type": contentType } }))

const expectError = (response: Response, status: number, type: string) =>
  Effect.gen(function* () {
    expect(response.status).toBe(status)
    expect(response.headers.get("content-type")).toContain("application/json")
    const body = yield* json(response)
    expect(body.error.type).toBe(type)
    expect(body.error.message.length).toBeGreaterThan(0)
    expect(body.error.request_id).toBe(response.headers.get("x-request-id"))
    return body.error
  })

describe("bad requests get a JSON error with the right status", () => {
  it.scopedLive("malformed JSON → 400", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      yield* expectError(yield* post(server, "/v1/chat", '{"message": "hi"'), 400, "malformed_json")
    })
  )

  it.scopedLive("schema violations → 422 naming the field", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ env: { MAX_MESSAGE_CHARS: "20" } })
      const cases: Array<[string, string]> = [
        ['{"message": ""}', "message"],
        ['{"message": "  \\n\\t "}', "message"],
        ['{"message": "a\\u0000b"}', "message"],
        ['{"message": "lone \\ud800 surrogate"}', "message"],
        ['{"message": "hi", "temperature": 2}', "temperature"],
        ['{"message": "hi", "session_id": "not-a-uuid"}', "session_id"],
        ['{"message": 42}', "message"],
        ['{"message": "' + "x".repeat(21) + '"}', "message"]
      ]
      for (const [body, field] of cases) {
        const error = yield* expectError(yield* post(server, "/v1/chat", body), 422, "validation_error")
        expect(error.field, body).toBe(field)
        expect(error.message.startsWith(`${field}: `), error.message).toBe(true)
      }
      yield* expectError(yield* post(server, "/v1/chat", "{}"), 422, "validation_error")
      yield* expectError(yield* call(() => server.request("/v1/chat/session/not-a-uuid")), 422, "validation_error")
    })
  )

  it.scopedLive("a message of exactly MAX_MESSAGE_CHARS characters is accepted", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ env: { MAX_MESSAGE_CHARS: "20" } })
      expect((yield* post(server, "/v1/chat", JSON.stringify({ message: "é".repeat(20) }))).status).toBe(200)
    })
  )

  it.scopedLive("a body over MAX_BODY_BYTES → 413 before it is read", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ env: { MAX_BODY_BYTES: "1024" } })
      const big = JSON.stringify({ message: "x".repeat(2000) })
      const error = yield* expectError(yield* post(server, "/v1/chat", big), 413, "payload_too_large")
      expect(error.message).toContain("1024")

      // Declared small, sent without a length (chunked): the limit holds while reading too.
      const chunked = yield* call(
        () =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = httpRequest(server.url + "/v1/chat", {
              method: "POST",
              headers: { "content-type": "application/json", "x-api-key": TEST_API_KEY, "transfer-encoding": "chunked" }
            })
            req.on("response", (res) => {
              let body = ""
              res.on("data", (chunk) => (body += chunk))
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
            })
            req.on("error", reject)
            req.write(big.slice(0, 1000))
            req.end(big.slice(1000))
          })
      )
      expect(chunked.status).toBe(413)
      expect(JSON.parse(chunked.body).error.type).toBe("payload_too_large")
    })
  )

  it.scopedLive("a body that is not JSON → 415", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      yield* expectError(
        yield* post(server, "/v1/chat", "message=hi", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type"
      )
      yield* expectError(
        yield* post(server, "/v1/chat", '{"message":"hi"}', "text/plain"),
        415,
        "unsupported_media_type"
      )
      expect((yield* post(server, "/v1/chat", '{"message":"hi"}', "application/json; charset=utf-8")).status).toBe(200)
    })
  )

  it.scopedLive("unknown route → 404, wrong method → 405 with Allow", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      yield* expectError(yield* call(() => server.request("/v1/nothing")), 404, "not_found")
      const wrongMethod = yield* call(() => server.request("/v1/chat", { method: "GET" }))
      yield* expectError(wrongMethod, 405, "method_not_allowed")
      expect(wrongMethod.headers.get("allow")).toBe("POST")
      const wrongOnHealth = yield* call(() => server.request("/health", { method: "POST" }))
      expect(wrongOnHealth.status).toBe(405)
      expect(wrongOnHealth.headers.get("allow")).toBe("GET")
    })
  )

  it.scopedLive("an unexpected failure → 500 with the request id and no internals", () =>
    Effect.gen(function* () {
      const broken = Generator.Test(() => Stream.die(new Error("secret internal detail at /srv/app.ts:42")))
      const server = yield* startTestServer({ generator: broken })
      const response = yield* post(server, "/v1/chat", '{"message":"hi"}')
      const error = yield* expectError(response, 500, "internal_error")
      const text = JSON.stringify(error)
      expect(text).not.toContain("secret internal detail")
      expect(text).not.toContain(".ts")
      // The operator, not the client, gets the details, under the same request id.
      const logged = server.logs.find((line) => line.includes("secret internal detail"))
      expect(JSON.parse(logged!).request_id).toBe(error.request_id)
    })
  )
})

describe("request ids and logs", () => {
  it.scopedLive("X-Request-Id is kept when well-formed and replaced otherwise", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const kept = yield* call(() => server.request("/health", { headers: { "x-request-id": "trace-abc_1.2" } }))
      expect(kept.headers.get("x-request-id")).toBe("trace-abc_1.2")
      for (const bad of ["has space", "x".repeat(129), "semi;colon"]) {
        const replaced = yield* call(() => server.request("/health", { headers: { "x-request-id": bad } }))
        const id = replaced.headers.get("x-request-id")!
        expect(id).not.toBe(bad)
        expect(id).toMatch(/^[0-9a-f-]{36}$/)
      }
    })
  )

  it.scopedLive("each request is one JSON log line with its fields, without the API key", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      yield* post(server, "/v1/chat", '{"message":"hello"}').pipe(Effect.map((r) => r.headers))
      const lines = server.logs.map((line) => JSON.parse(line))
      const access = lines.find((line) => line.message === "request" && line.route === "/v1/chat")
      expect(access).toMatchObject({ level: "info", method: "POST", route: "/v1/chat", status: 200 })
      expect(typeof access.duration_ms).toBe("number")
      expect(Number.isNaN(Date.parse(access.time))).toBe(false)
      expect(access.request_id).toMatch(/^[0-9a-f-]{36}$/)
      expect(server.logs.join("\n")).not.toContain(TEST_API_KEY)
    })
  )
})

describe("operational endpoints", () => {
  it.scopedLive("/health is open and 200", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const response = yield* call(() => fetch(server.url + "/health"))
      expect(response.status).toBe(200)
      expect(yield* json(response)).toEqual({ status: "ok" })
    })
  )

  it.scopedLive("/ready lists every dependency, and is 503 when one is down", () =>
    Effect.gen(function* () {
      const healthy = yield* startTestServer()
      const ok = yield* call(() => fetch(healthy.url + "/ready"))
      expect(ok.status).toBe(200)
      const body = yield* json(ok)
      expect(body.status).toBe("ready")
      expect(Object.keys(body.dependencies).sort()).toEqual(["generator", "session", "storage"])

      const down = Layer.succeed(
        Generator,
        Generator.make({
          info: Effect.die("unused"),
          stream: () => Stream.empty,
          readiness: Effect.succeed({ status: "down", kind: "tgi", detail: "connection refused" })
        })
      )
      const degraded = yield* startTestServer({ generator: down })
      const notReady = yield* call(() => fetch(degraded.url + "/ready"))
      expect(notReady.status).toBe(503)
      expect(yield* json(notReady)).toMatchObject({
        status: "not_ready",
        dependencies: { generator: { status: "down", detail: "connection refused" } }
      })
    })
  )

  it.scopedLive("/metrics is Prometheus text that counts the requests served", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      yield* call(() => fetch(server.url + "/v1/chat/session/6f1c2a47-55e1-4d1e-9d4b-9d3c1b2a7e10"))
      const response = yield* call(() => fetch(server.url + "/metrics"))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toContain("text/plain")
      const text = yield* call(() => response.text())
      expect(text).toMatch(
        /nexxi_http_requests_total\{route="\/v1\/chat\/session\/:session_id",method="GET",status_class="4xx"\} [1-9]/
      )
      expect(text).toContain("# TYPE nexxi_http_request_duration_seconds histogram")
    })
  )

  it.scopedLive("/docs and /openapi.json are served in development, not in production", () =>
    Effect.gen(function* () {
      const dev = yield* startTestServer()
      const spec = yield* json(yield* call(() => fetch(dev.url + "/openapi.json")))
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining(["/v1/chat", "/v1/chat/stream", "/v1/chat/session", "/v1/chat/session/{session_id}"])
      )
      expect(spec.components.securitySchemes.apiKey).toMatchObject({ type: "apiKey", in: "header", name: "X-API-Key" })
      const docs = yield* call(() => fetch(dev.url + "/docs"))
      expect(docs.status).toBe(200)
      expect(yield* call(() => docs.text())).toContain("swagger")

      const secret = "s".repeat(32)
      const prod = yield* startTestServer({
        env: { APP_ENV: "production", API_KEY: secret + "k", APP_SECRET_KEY: secret }
      })
      expect((yield* call(() => fetch(prod.url + "/openapi.json"))).status).toBe(404)
      expect((yield* call(() => fetch(prod.url + "/docs"))).status).toBe(404)
    })
  )
})
