/**
 * Bad input, generated with fast-check, against a running Nexxi process: every bad request gets a 4xx with the
 * common JSON error body (never a 500, never a crash), /health answers throughout, and what Node's HTTP parser
 * refuses before the application (bad framing, oversized headers, no Host) is answered the same way.
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import fc from "fast-check"
import { healthy, nexxiProcess, RELIABILITY_KEY, rawExchange, rawSocket, readUntilClosed } from "../support/nexxi.js"
import type { NexxiProcess } from "../support/process.js"

const MAX_MESSAGE_CHARS = 2_000
const MAX_BODY_BYTES = 256 * 1024

class Setup extends Context.Tag("reliability/BadInput")<Setup, NexxiProcess>() {}

const SetupLive = Layer.scoped(
  Setup,
  nexxiProcess({ MAX_MESSAGE_CHARS: String(MAX_MESSAGE_CHARS), MAX_BODY_BYTES: String(MAX_BODY_BYTES) })
)

interface BadRequest {
  readonly method: string
  readonly path: string
  readonly body?: string | Uint8Array
  readonly contentType?: string
  /** The statuses this input may get; any 4xx when absent. */
  readonly expected?: ReadonlyArray<number>
}

const uuid = fc.uuid({ version: 4 })
const endpoints = [
  { method: "POST", path: "/v1/chat" },
  { method: "POST", path: "/v1/chat/stream" },
  { method: "DELETE", path: "/v1/chat/session" }
] as const
const endpoint = fc.constantFrom(...endpoints)
const withBody = <A>(arbitrary: fc.Arbitrary<A>, render: (value: A) => string, expected?: ReadonlyArray<number>) =>
  fc.tuple(endpoint, arbitrary).map(([target, value]): BadRequest => ({
    ...target,
    body: render(value),
    ...(expected ? { expected } : {})
  }))

/**
 * An id put in a path segment. "." and ".." are left out: they are dot segments, which every URL parser resolves, so
 * `/v1/conversations/.` is the conversation list and not a bad id.
 */
const pathSegment = fc.string({ minLength: 1 }).filter((id) => id !== "." && id !== "..")

const validMessage = fc.string({ minLength: 1, maxLength: 40 }).filter((text) => /^[a-z ]*[a-z][a-z ]*$/i.test(text))

/** Text with at least one unpaired UTF-16 surrogate, or a NUL. */
const loneSurrogate = fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff")
const poisoned = fc
  .tuple(fc.string({ maxLength: 20 }), fc.oneof(loneSurrogate, fc.constant("\u0000")), fc.string({ maxLength: 20 }))
  .map(([before, bad, after]) => before + bad + after)

const badRequests: fc.Arbitrary<BadRequest> = fc.oneof(
  // Malformed and truncated JSON.
  withBody(
    fc.tuple(validMessage, fc.nat()).map(([message, cut]) => {
      const text = JSON.stringify({ message })
      return text.slice(0, cut % (text.length - 1))
    }),
    (text) => text,
    // Cut to nothing, it is an empty JSON body: no object where the schema wants one.
    [400, 422]
  ),
  withBody(
    fc.string({ minLength: 1 }).filter((text) => {
      try {
        JSON.parse(text)
        return false
      } catch {
        return true
      }
    }),
    (text) => text,
    [400]
  ),
  // Raw control characters inside a JSON string (JSON requires them escaped).
  withBody(fc.integer({ min: 0, max: 0x1f }), (code) => `{"message": "a${String.fromCharCode(code)}b"}`, [400]),
  // Wrong types.
  withBody(
    fc.jsonValue().filter((value) => typeof value !== "string"),
    (value) => JSON.stringify({ message: value }),
    [422]
  ),
  withBody(fc.jsonValue(), (value) => JSON.stringify(value), [400, 422]),
  withBody(
    fc.tuple(
      validMessage,
      fc.jsonValue().filter((value) => typeof value !== "boolean")
    ),
    ([message, stream]) => JSON.stringify({ message, stream }),
    [422]
  ),
  // Huge strings, over MAX_MESSAGE_CHARS but within the body limit.
  withBody(
    fc.integer({ min: MAX_MESSAGE_CHARS + 1, max: 50_000 }),
    (length) => JSON.stringify({ message: "x".repeat(length) }),
    [422]
  ),
  // Deep nesting, inside the message and as the whole body.
  withBody(
    fc.tuple(fc.integer({ min: 65, max: 60_000 }), fc.boolean()),
    ([depth, arrays]) => {
      const [open, close] = arrays ? ["[", "]"] : ['{"a":', "}"]
      return `{"message": ${open.repeat(depth)}1${close.repeat(depth)}}`
    },
    // Deep enough, it is also larger than the body limit.
    [413, 422]
  ),
  withBody(fc.integer({ min: 65, max: 60_000 }), (depth) => "[".repeat(depth) + "]".repeat(depth), [422]),
  // Unknown fields, prototype keys.
  withBody(
    fc
      .tuple(
        validMessage,
        fc.oneof(fc.constantFrom("__proto__", "constructor", "prototype", "toString"), fc.string({ minLength: 1 })),
        fc.jsonValue()
      )
      .filter(([, key]) => !["message", "session_id", "stream"].includes(key)),
    ([message, key, value]) =>
      `{"message": ${JSON.stringify(message)}, ${JSON.stringify(key)}: ${JSON.stringify(value)}}`,
    [422]
  ),
  // NUL characters and lone surrogates in strings.
  withBody(poisoned, (message) => JSON.stringify({ message }), [422]),
  withBody(
    fc.tuple(validMessage, poisoned),
    ([message, sessionId]) => JSON.stringify({ message, session_id: sessionId }),
    [422]
  ),
  // Invalid session ids.
  withBody(
    fc.tuple(
      validMessage,
      fc.oneof(
        fc.string(),
        uuid.map((id) => id.toUpperCase() + "0"),
        uuid.map((id) => id.replaceAll("-", ""))
      )
    ),
    ([message, sessionId]) => JSON.stringify({ message, session_id: sessionId }),
    [422]
  ),
  fc
    .oneof(
      pathSegment.filter((id) => !id.includes("/") && !id.includes("?") && !id.includes("#")),
      uuid.map((id) => id.slice(1))
    )
    .map((id): BadRequest => ({
      method: "GET",
      path: `/v1/chat/session/${encodeURIComponent(id)}`,
      expected: [404, 422]
    })),
  pathSegment.map((id): BadRequest => ({
    method: "GET",
    path: `/v1/conversations/${encodeURIComponent(id)}`,
    expected: [404, 422]
  })),
  fc.tuple(fc.string(), fc.string()).map(([limit, cursor]): BadRequest => ({
    method: "GET",
    path: `/v1/conversations?limit=${encodeURIComponent(limit + "x")}&cursor=${encodeURIComponent(cursor)}`,
    expected: [422]
  })),
  // Invalid UTF-8 in an otherwise valid body.
  fc
    .tuple(endpoint, fc.constantFrom([0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80]))
    .map(([target, bytes]): BadRequest => ({
      ...target,
      body: Buffer.concat([Buffer.from('{"message": "a'), Buffer.from(bytes), Buffer.from('b"}')]),
      expected: [400]
    })),
  // Not JSON at all.
  fc
    .tuple(endpoint, fc.constantFrom("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"))
    .map(([target, contentType]): BadRequest => ({ ...target, body: "message=hi", contentType, expected: [415] }))
)

const send = async (nexxi: NexxiProcess, request: BadRequest) => {
  const response = await fetch(nexxi.url + request.path, {
    method: request.method,
    headers: {
      "x-api-key": RELIABILITY_KEY,
      ...(request.body === undefined ? {} : { "content-type": request.contentType ?? "application/json" })
    },
    ...(request.body === undefined ? {} : { body: request.body })
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, text }
}

/** The common error body, with the response's own request id. */
const expectErrorBody = (text: string, requestId: string | null | undefined) => {
  const { error } = JSON.parse(text)
  expect(error.type).toMatch(/^[a-z_]+$/)
  expect(typeof error.message).toBe("string")
  expect(error.request_id).toBe(requestId)
  return error
}

layer(SetupLive, { excludeTestServices: true, timeout: "90 seconds" })("bad input", (it) => {
  it.effect("generated bad requests: each gets its 4xx and the common JSON error body, and /health stays up", () =>
    Effect.gen(function* () {
      const nexxi = yield* Setup
      let runs = 0
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(badRequests, async (request) => {
            const { status, headers, text } = await send(nexxi, request)
            const label = `${request.method} ${request.path} ${String(request.body).slice(0, 200)} → ${status} ${text.slice(0, 300)}`
            expect(status, label).toBeGreaterThanOrEqual(400)
            expect(status, label).toBeLessThan(500)
            if (request.expected !== undefined) expect(request.expected, label).toContain(status)
            expect(headers.get("content-type"), label).toContain("application/json")
            expectErrorBody(text, headers.get("x-request-id"))
            if (++runs % 50 === 0) expect(await Effect.runPromise(healthy(nexxi))).toBe(true)
          }),
          { numRuns: 400 }
        )
      )
      expect(nexxi.child.exitCode).toBe(null)
      expect(yield* healthy(nexxi)).toBe(true)
      expect(nexxi.stdout()).not.toContain('"status":500')
    })
  )

  it.effect("oversized bodies: 1 MB gets 413 at once; 100 MB sent slowly gets 413 before most of it is sent", () =>
    Effect.gen(function* () {
      const nexxi = yield* Setup
      const big = yield* Effect.promise(() =>
        send(nexxi, { method: "POST", path: "/v1/chat", body: JSON.stringify({ message: "x".repeat(1024 * 1024) }) })
      )
      expect(big.status).toBe(413)
      expect(expectErrorBody(big.text, big.headers.get("x-request-id")).type).toBe("payload_too_large")

      for (const framing of ["content-length", "chunked"] as const) {
        const socket = yield* Effect.promise(() => rawSocket(nexxi.url))
        const reply = readUntilClosed(socket, 15_000)
        socket.write(
          `POST /v1/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: ${RELIABILITY_KEY}\r\n` +
            "content-type: application/json\r\n" +
            (framing === "content-length"
              ? `content-length: ${100 * 1024 * 1024}\r\n\r\n`
              : "transfer-encoding: chunked\r\n\r\n")
        )
        // 64 KB every 20 ms: 100 MB would take half a minute.
        let sent = 0
        const drip = setInterval(() => {
          if (!socket.writable) return
          const piece = Buffer.alloc(64 * 1024, "x")
          socket.write(
            framing === "chunked"
              ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")])
              : piece
          )
          sent += piece.length
        }, 20)
        const answer = yield* Effect.promise(() => reply).pipe(Effect.ensuring(Effect.sync(() => clearInterval(drip))))
        expect(answer.status, framing).toBe(413)
        expect(answer.closed, framing).toBe(true)
        expect(expectErrorBody(answer.body, answer.headers["x-request-id"]).type).toBe("payload_too_large")
        expect(sent, framing).toBeLessThan(10 * 1024 * 1024)
      }
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect("malformed HTTP is refused by the parser with a 4xx and the common JSON error body", () =>
    Effect.gen(function* () {
      const nexxi = yield* Setup
      const head = `POST /v1/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: ${RELIABILITY_KEY}\r\ncontent-type: application/json\r\n`
      const cases: ReadonlyArray<readonly [string, string, number]> = [
        ["no Host", "GET /health HTTP/1.1\r\n\r\n", 400],
        ["oversized headers", `GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`, 431],
        [
          "too many headers in total",
          `GET /health HTTP/1.1\r\nhost: x\r\n${"x-h: 1234567890\r\n".repeat(2_000)}\r\n`,
          431
        ],
        [
          "Content-Length and Transfer-Encoding",
          `${head}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
          400
        ],
        ["two Content-Lengths", `${head}content-length: 5\r\ncontent-length: 6\r\n\r\n{"a":1}`, 400],
        ["a negative Content-Length", `${head}content-length: -1\r\n\r\n`, 400],
        ["a bad chunk size", `${head}transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`, 400],
        [
          "a bare CR in a header value",
          "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-request-id: a\rinjected: 1\r\n\r\n",
          400
        ],
        ["a NUL in a header value", "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-test: a\u0000b\r\n\r\n", 400],
        ["a space in a header name", "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx test: 1\r\n\r\n", 400],
        ["a bad method", "G(T /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n", 400],
        ["a bad version", "GET /health HTTP/9.9\r\nhost: 127.0.0.1\r\n\r\n", 400],
        ["an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400],
        ["binary garbage", "\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003", 400]
      ]
      for (const [name, bytes, status] of cases) {
        const reply = yield* Effect.promise(() => rawExchange(nexxi.url, Buffer.from(bytes, "latin1")))
        expect(reply.status, `${name}: ${reply.text.slice(0, 200)}`).toBe(status)
        expect(reply.closed, name).toBe(true)
        expect(reply.headers["content-type"], name).toBe("application/json")
        const error = expectErrorBody(reply.body, reply.headers["x-request-id"])
        expect(error.type, name).toMatch(/^(malformed_request|request_header_fields_too_large)$/)
      }
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect("header injection: a request id that is not well-formed is replaced, never echoed", () =>
    Effect.gen(function* () {
      const nexxi = yield* Setup
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc
              .string({ unit: "binary-ascii", minLength: 1, maxLength: 200 })
              .filter(
                (id) => !/^[A-Za-z0-9._-]{1,128}$/.test(id) && !/[\r\n\0]/.test(id) && id.trim() === id && id.length > 0
              ),
            async (id) => {
              const reply = await rawExchange(
                nexxi.url,
                Buffer.from(
                  `GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-request-id: ${id}\r\nconnection: close\r\n\r\n`,
                  "latin1"
                )
              )
              if (reply.status === 200) {
                expect(reply.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/)
              } else {
                // Characters a header may not hold: refused by the parser.
                expect(reply.status).toBe(400)
                expectErrorBody(reply.body, reply.headers["x-request-id"])
              }
              expect(reply.text).not.toContain(`${id}\r\n`)
            }
          ),
          { numRuns: 100 }
        )
      )
    })
  )
})
