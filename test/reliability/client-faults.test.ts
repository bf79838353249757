/**
 * Clients that misbehave: leaving mid-stream, never reading, sending their request a byte at a time (slowloris),
 * opening many connections at once. Nexxi stops the work a client no longer waits for, holds bounded memory for a
 * stuck one and drops it after STREAM_WRITE_TIMEOUT_MS, times out slow requests with a JSON 408, and keeps serving
 * everyone else.
 */
import { expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import type { RecordedRequest, TgiServer } from "../../dev/tgi/server.js"
import {
  call,
  healthy,
  metricValue,
  nexxiProcess,
  openDescriptors,
  RELIABILITY_KEY,
  rawSocket,
  readUntilClosed,
  residentBytes
} from "../support/nexxi.js"
import type { NexxiProcess } from "../support/process.js"
import { eventually } from "../support/services.js"
import { readSse } from "../support/sse.js"
import { startTestServer } from "../support/server.js"
import { startTgi } from "../support/tgi.js"
import { GeneratorLive } from "../../src/Generator/Live.js"

const HEADERS_TIMEOUT_MS = 1_000
const REQUEST_TIMEOUT_MS = 2_000
const WRITE_TIMEOUT_MS = 2_000
const CONCURRENCY = 8
/**
 * A reply larger than the kernel's buffers between Nexxi and a client that reads nothing (about 90 bytes an event;
 * Linux holds about 5 MB of it on loopback).
 */
const ENDLESS_TOKENS = 80_000

class Setup extends Context.Tag("reliability/ClientFaults")<
  Setup,
  { readonly nexxi: NexxiProcess; readonly tgi: TgiServer }
>() {}

const lastUserMessage = (request: RecordedRequest) => {
  const messages = (request.body as { messages?: Array<{ role: string; content: string }> } | undefined)?.messages
  return messages?.at(-1)?.content ?? ""
}

const SetupLive = Layer.scoped(
  Setup,
  Effect.gen(function* () {
    // The message says how the model answers: slowly, endlessly, or at once.
    const tgi = yield* startTgi({
      reply: "Quick answer.",
      tokensPerSecond: 0,
      maxInputTokens: 4_000,
      maxTotalTokens: ENDLESS_TOKENS + 8_000,
      overridesFor: (request) => {
        const message = lastUserMessage(request)
        if (message.startsWith("slow")) return { reply: undefined, replyTokens: 400, tokensPerSecond: 20 }
        if (message.startsWith("steady")) return { reply: undefined, replyTokens: 30, tokensPerSecond: 30 }
        if (message.startsWith("endless")) return { reply: undefined, replyTokens: ENDLESS_TOKENS, tokensPerSecond: 0 }
        return undefined
      }
    })
    // The model server plans a reply's tokens up front: plan the long one while Nexxi starts.
    const warm = Effect.promise(() =>
      fetch(`${tgi.url}/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ inputs: "warm up", parameters: { max_new_tokens: ENDLESS_TOKENS } })
      }).then((response) => response.text())
    )
    const [nexxi] = yield* Effect.all(
      [
        nexxiProcess({
          GENERATOR: "tgi",
          TGI_URL: tgi.url,
          MAX_NEW_TOKENS: String(ENDLESS_TOKENS),
          HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
          HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
          STREAM_WRITE_TIMEOUT_MS: String(WRITE_TIMEOUT_MS),
          RATE_LIMIT_CONCURRENCY: String(CONCURRENCY)
        }),
        warm
      ],
      { concurrency: "unbounded" }
    )
    return { nexxi, tgi }
  })
)

const activeStreams = (nexxi: NexxiProcess) => metricValue(nexxi, "nexxi_chat_active_streams")

/** Nexxi's open sockets, once what the test did has settled (keep-alive connections of its own fetches closed). */
const sockets = (nexxi: NexxiProcess) => Effect.sync(() => openDescriptors(nexxi.child.pid!).sockets)

/** Sends the head of a request on a raw socket. */
const requestHead = (method: string, path: string, headers: Record<string, string | number>) =>
  `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
  Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("")

const streamBody = (message: string) => JSON.stringify({ message })

layer(SetupLive, { excludeTestServices: true, timeout: "90 seconds" })("hostile and broken clients", (it) => {
  it.effect("disconnecting mid-stream aborts the model's request, and leaves no stream, socket or timer behind", () =>
    Effect.gen(function* () {
      const { nexxi, tgi } = yield* Setup
      const baseline = yield* sockets(nexxi)
      const before = tgi.requests.length
      const disconnects = () => metricValue(nexxi, "nexxi_chat_client_disconnects_total", { route: "/v1/chat/stream" })
      const disconnectsBefore = yield* disconnects()
      const controllers = Array.from({ length: 5 }, () => new AbortController())
      yield* Effect.forEach(
        controllers,
        (controller) =>
          Effect.promise(async () => {
            const response = await call(nexxi, "/v1/chat/stream", {
              method: "POST",
              json: { message: "slow story, please" },
              signal: controller.signal
            })
            expect(response.status).toBe(200)
            const events = readSse(response)
            expect(JSON.parse((await events.next())!.data).finished).toBe(false)
          }),
        { concurrency: "unbounded" }
      )
      expect(yield* activeStreams(nexxi)).toBe(5)
      for (const controller of controllers) controller.abort()

      // Each upstream request was aborted long before its 400 tokens at 20 a second.
      const upstream = () => tgi.requests.slice(before).filter((request) => request.path === "/v1/chat/completions")
      yield* eventually(
        Effect.sync(() => upstream().filter((request) => request.disconnectedAt !== undefined).length),
        (n) => n === 5
      )
      expect(upstream().every((request) => request.tokensSent < 400)).toBe(true)
      yield* eventually(activeStreams(nexxi), (n) => n === 0)
      // Our five connections and Nexxi's five to the model server are closed again.
      yield* eventually(sockets(nexxi), (n) => n <= baseline)
      expect((yield* disconnects()) - disconnectsBefore).toBe(5)
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect("a client that never reads costs bounded memory and is dropped after STREAM_WRITE_TIMEOUT_MS", () =>
    Effect.gen(function* () {
      const { nexxi, tgi } = yield* Setup
      const pid = nexxi.child.pid!
      const before = tgi.requests.length
      const body = streamBody("endless story, please")
      const socket = yield* Effect.promise(() => rawSocket(nexxi.url))
      // Never read: nothing is taken from the kernel's buffer, so Nexxi's writes soon wait.
      socket.pause()
      const sentAt = performance.now()
      socket.write(
        requestHead("POST", "/v1/chat/stream", {
          "x-api-key": RELIABILITY_KEY,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body)
        }) +
          "\r\n" +
          body
      )
      const upstream = yield* Effect.promise(() =>
        tgi.waitFor((request) => request.id > before && request.path === "/v1/chat/completions")
      )
      // Sampled while the client is stuck, until Nexxi gives up on it (and so on the model's request): when the
      // model last got to send a token tells when Nexxi stopped taking the reply.
      const clock = () => performance.timeOrigin + performance.now()
      let lastProgress = { tokens: 0, at: clock(), rss: residentBytes(pid) }
      let peakRssSince = lastProgress.rss
      yield* eventually(
        Effect.sync(() => {
          const rss = residentBytes(pid)
          if (upstream.tokensSent !== lastProgress.tokens) {
            lastProgress = { tokens: upstream.tokensSent, at: clock(), rss }
            peakRssSince = rss
          }
          peakRssSince = Math.max(peakRssSince, rss)
          return upstream.disconnectedAt
        }),
        (at) => at !== undefined,
        "60 seconds"
      )
      const stalledFor = upstream.disconnectedAt! - lastProgress.at
      expect(upstream.disconnectedAt! - (performance.timeOrigin + sentAt)).toBeGreaterThanOrEqual(WRITE_TIMEOUT_MS)
      // Once its client stopped reading, Nexxi stopped reading the model (backpressure, not buffering) ...
      expect(upstream.tokensSent).toBeLessThan(ENDLESS_TOKENS)
      expect(stalledFor).toBeGreaterThanOrEqual(WRITE_TIMEOUT_MS / 2)
      // ... and its memory did not grow meanwhile; then it gave up on the client after the write timeout.
      expect(peakRssSince - lastProgress.rss).toBeLessThan(32 * 1024 * 1024)
      expect(stalledFor).toBeLessThan(WRITE_TIMEOUT_MS + 3_000)
      // The connection was closed by Nexxi: reading now drains what was buffered, then the end.
      socket.resume()
      const reply = yield* Effect.promise(() => readUntilClosed(socket, 10_000))
      expect(reply.closed).toBe(true)
      expect(reply.status).toBe(200)
      yield* eventually(activeStreams(nexxi), (n) => n === 0)
      expect(yield* metricValue(nexxi, "nexxi_http_stalled_clients_total")).toBe(1)
      expect(nexxi.stdout()).toContain(`Disconnected a client that read nothing for ${WRITE_TIMEOUT_MS} ms`)
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect("slowloris headers: 408 with a JSON error after HTTP_HEADERS_TIMEOUT_MS, connection closed", () =>
    Effect.gen(function* () {
      const { nexxi } = yield* Setup
      const socket = yield* Effect.promise(() => rawSocket(nexxi.url))
      const reply = readUntilClosed(socket, HEADERS_TIMEOUT_MS + 10_000)
      const started = performance.now()
      socket.write("GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
      // One header byte at a time, never the blank line that ends the headers.
      const drip = setInterval(() => socket.writable && socket.write("x"), 100)
      const answer = yield* Effect.promise(() => reply).pipe(Effect.ensuring(Effect.sync(() => clearInterval(drip))))
      const elapsed = performance.now() - started
      expect(answer.closed).toBe(true)
      expect(answer.status).toBe(408)
      expect(answer.headers["content-type"]).toBe("application/json")
      expect(JSON.parse(answer.body).error).toMatchObject({ type: "request_timeout", request_id: expect.any(String) })
      expect(elapsed).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100)
      expect(elapsed).toBeLessThan(HEADERS_TIMEOUT_MS + 6_000)
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect("slowloris body: 408 with a JSON error after HTTP_REQUEST_TIMEOUT_MS, connection closed", () =>
    Effect.gen(function* () {
      const { nexxi, tgi } = yield* Setup
      const before = tgi.requests.length
      const socket = yield* Effect.promise(() => rawSocket(nexxi.url))
      const reply = readUntilClosed(socket, REQUEST_TIMEOUT_MS + 10_000)
      const started = performance.now()
      socket.write(
        requestHead("POST", "/v1/chat", {
          "x-api-key": RELIABILITY_KEY,
          "content-type": "application/json",
          "content-length": 10_000
        }) + '\r\n{"message": "'
      )
      const drip = setInterval(() => socket.writable && socket.write("a"), 100)
      const answer = yield* Effect.promise(() => reply).pipe(Effect.ensuring(Effect.sync(() => clearInterval(drip))))
      const elapsed = performance.now() - started
      expect(answer.closed).toBe(true)
      expect(answer.status).toBe(408)
      expect(JSON.parse(answer.body).error.type).toBe("request_timeout")
      expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100)
      expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_MS + 6_000)
      // The half-sent message never reached the model.
      expect(tgi.requests.length).toBe(before)
      expect(yield* healthy(nexxi)).toBe(true)
    })
  )

  it.effect(
    "many connections from one client: idle ones are closed, requests beyond the key's concurrency get 429",
    () =>
      Effect.gen(function* () {
        const { nexxi } = yield* Setup
        const baseline = yield* sockets(nexxi)
        // Connections that never send a byte.
        const idle = yield* Effect.forEach(
          Array.from({ length: 300 }),
          () => Effect.promise(() => rawSocket(nexxi.url)),
          { concurrency: 50 }
        )
        const closed = idle.map((socket) => readUntilClosed(socket, HEADERS_TIMEOUT_MS + 10_000))
        // Meanwhile, 40 streams at once from the same key.
        const statuses = yield* Effect.forEach(
          Array.from({ length: 40 }),
          () =>
            Effect.promise(async () => {
              const response = await call(nexxi, "/v1/chat/stream", { method: "POST", json: { message: "steady one" } })
              if (response.status !== 200) {
                return {
                  status: response.status,
                  body: await response.json(),
                  retryAfter: response.headers.get("retry-after")
                }
              }
              const events = await readSse(response).rest()
              return { status: 200, body: JSON.parse(events.at(-1)!.data), retryAfter: null }
            }),
          { concurrency: "unbounded" }
        )
        const served = statuses.filter((result) => result.status === 200)
        const refused = statuses.filter((result) => result.status !== 200)
        expect(served.length).toBeGreaterThanOrEqual(1)
        expect(served.length).toBeLessThanOrEqual(CONCURRENCY)
        expect(served.every((result) => result.body.finished === true)).toBe(true)
        for (const result of refused) {
          expect(result.status).toBe(429)
          expect(result.body.error).toMatchObject({ type: "rate_limited", limit: "concurrency" })
          expect(Number(result.retryAfter)).toBeGreaterThan(0)
        }
        expect(yield* healthy(nexxi)).toBe(true)
        // The idle connections were closed by the server (headers timeout), not left open.
        const results = yield* Effect.promise(() => Promise.all(closed))
        expect(results.every((result) => result.closed)).toBe(true)
        yield* eventually(sockets(nexxi), (n) => n <= baseline)
        expect(yield* activeStreams(nexxi)).toBe(0)
      })
  )
})

/** Timers and sockets this process holds (unref'd timers excluded: they keep nothing alive). */
const resources = () => {
  const info = process.getActiveResourcesInfo()
  return {
    timers: info.filter((kind) => kind === "Timeout").length,
    sockets: info.filter((kind) => kind === "TCPSocketWrap").length
  }
}

// The same disconnects, with the server in this process: what it leaves behind is visible to Node itself.
it.scopedLive("disconnecting mid-stream leaves no timer and no socket behind (in-process server)", () =>
  Effect.gen(function* () {
    const tgi = yield* startTgi({ replyTokens: 400, tokensPerSecond: 20 })
    const server = yield* startTestServer({
      generator: GeneratorLive,
      env: { TGI_URL: tgi.url, SSE_KEEPALIVE_MS: "200" }
    })
    // One whole exchange first, so that what is created once (pools, caches) is there before the baseline.
    yield* Effect.promise(() => server.request("/health").then((response) => response.text()))
    const baseline = resources()
    const controllers = Array.from({ length: 5 }, () => new AbortController())
    yield* Effect.forEach(
      controllers,
      (controller) =>
        Effect.promise(async () => {
          const response = await server.request("/v1/chat/stream", {
            method: "POST",
            json: { message: "a long story" },
            signal: controller.signal
          })
          await readSse(response).next()
        }),
      { concurrency: "unbounded" }
    )
    expect(resources().sockets).toBeGreaterThan(baseline.sockets)
    for (const controller of controllers) controller.abort()
    yield* Effect.promise(() =>
      tgi.waitFor((request) => request.path === "/v1/chat/completions" && request.disconnectedAt !== undefined)
    )
    // While polling, the poll's own sleep is one more timer.
    yield* eventually(
      Effect.sync(resources),
      (now) => now.timers <= baseline.timers + 1 && now.sockets <= baseline.sockets
    )
    const after = resources()
    expect(after.timers, process.getActiveResourcesInfo().join(", ")).toBeLessThanOrEqual(baseline.timers)
    expect(after.sockets, process.getActiveResourcesInfo().join(", ")).toBeLessThanOrEqual(baseline.sockets)
  })
)
