/** Reads a Server-Sent Events response with a real SSE parser, event by event, as a browser would. */
import { createParser, type EventSourceMessage } from "eventsource-parser"

export interface SseReader {
  /** The next event, or undefined when the stream ended. */
  readonly next: () => Promise<EventSourceMessage | undefined>
  /** Every remaining event until the end of the stream. */
  readonly rest: () => Promise<ReadonlyArray<EventSourceMessage>>
  readonly comments: ReadonlyArray<string>
  readonly cancel: () => Promise<void>
}

export const readSse = (response: Response): SseReader => {
  const buffered: Array<EventSourceMessage> = []
  const comments: Array<string> = []
  const parser = createParser({ onEvent: (event) => buffered.push(event), onComment: (c) => comments.push(c) })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let ended = false

  const next = async (): Promise<EventSourceMessage | undefined> => {
    while (buffered.length === 0 && !ended) {
      const { done, value } = await reader.read()
      if (done) ended = true
      else parser.feed(decoder.decode(value, { stream: true }))
    }
    return buffered.shift()
  }
  const rest = async () => {
    const events: Array<EventSourceMessage> = []
    for (let event = await next(); event !== undefined; event = await next()) events.push(event)
    return events
  }
  return { next, rest, comments, cancel: () => reader.cancel() }
}
