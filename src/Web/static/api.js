// Nexxi's JSON API, as the page uses it: every call sends the X-API-Key header; errors become ApiError with the
// API's error body (type, message, retry_after_seconds, ...); chat replies are read as Server-Sent Events.

/** A failed call: `detail` is the `error` object of Nexxi's error body (or one made up for a network failure). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail.message)
    this.name = "ApiError"
    this.status = status
    this.detail = detail
  }
}

const isAbort = (error) => error instanceof DOMException && error.name === "AbortError"

/** The error body of a failed response; Retry-After fills in the wait when the body does not say it. */
const failure = async (response) => {
  let detail
  try {
    detail = (await response.json()).error
  } catch {
    detail = undefined
  }
  const retryAfter = Number(response.headers.get("retry-after"))
  return new ApiError(response.status, {
    type: `http_${response.status}`,
    message: response.statusText,
    ...detail,
    ...(detail?.retry_after_seconds === undefined && retryAfter > 0 ? { retry_after_seconds: retryAfter } : {})
  })
}

const call = async (key, method, path, { body, signal } = {}) => {
  let response
  try {
    response = await fetch(path, {
      method,
      headers: { "x-api-key": key, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store"
    })
  } catch (error) {
    if (isAbort(error)) throw error
    throw new ApiError(0, { type: "network_error", message: String(error) })
  }
  if (!response.ok) throw await failure(response)
  return response
}

export const listConversations = async (key, cursor) => {
  const query = new URLSearchParams({ limit: "50", ...(cursor ? { cursor } : {}) })
  return (await call(key, "GET", `/v1/conversations?${query}`)).json()
}

export const getConversation = async (key, id) =>
  (await call(key, "GET", `/v1/conversations/${encodeURIComponent(id)}`)).json()

export const deleteConversation = (key, id) => call(key, "DELETE", "/v1/chat/session", { body: { session_id: id } })

/**
 * Sends a message and yields the reply's chunks (`{session_id, delta, finished, ...}`) as they arrive. Aborting
 * `signal` closes the connection, which stops the generation on the server. An error before the stream starts is
 * thrown as the HTTP error; one after it (an `error` event) is thrown when it arrives.
 */
export async function* chatStream(key, { message, sessionId }, signal) {
  const body = sessionId ? { session_id: sessionId, message } : { message }
  const response = await call(key, "POST", "/v1/chat/stream", { body, signal })
  for await (const event of serverSentEvents(response.body, signal)) {
    if (event.event === "error") {
      let detail
      try {
        detail = JSON.parse(event.data).error
      } catch {
        detail = undefined
      }
      throw new ApiError(500, detail ?? { type: "stream_error", message: event.data })
    }
    if (event.event === "message" && event.data !== "") yield JSON.parse(event.data)
  }
}

/**
 * A Server-Sent Events parser over a fetch body (EventSource cannot send headers): events are separated by a
 * blank line; `data:` lines join with newlines; `event:` names the event; lines starting with `:` (keep-alive
 * comments) are ignored. Lines end with LF, CRLF or CR.
 */
export async function* serverSentEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  const onAbort = () => reader.cancel().catch(() => {})
  signal?.addEventListener("abort", onAbort, { once: true })
  let ended = false
  let buffer = ""
  let event = { event: "message", data: [] }
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      let text = buffer + value
      // A CR at the very end may be the first half of a CRLF: decide when the next piece arrives.
      const heldBack = text.endsWith("\r") ? "\r" : ""
      if (heldBack) text = text.slice(0, -1)
      const lines = text.split(/\r\n|\r|\n/)
      buffer = (lines.pop() ?? "") + heldBack
      for (const line of lines) {
        if (line === "") {
          if (event.data.length > 0) yield { event: event.event, data: event.data.join("\n") }
          event = { event: "message", data: [] }
          continue
        }
        if (line.startsWith(":")) continue
        const colon = line.indexOf(":")
        const field = colon === -1 ? line : line.slice(0, colon)
        let fieldValue = colon === -1 ? "" : line.slice(colon + 1)
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1)
        if (field === "data") event.data.push(fieldValue)
        else if (field === "event") event.event = fieldValue || "message"
      }
    }
    ended = true
    if (signal?.aborted) throw new DOMException("The reply was stopped", "AbortError")
  } finally {
    signal?.removeEventListener("abort", onAbort)
    // The consumer stopped early: close the connection rather than leave it open.
    if (!ended) reader.cancel().catch(() => {})
  }
}
