/**
 * Redaction of text that arrives in pieces (a model's reply, token by token): each piece goes in, the text that is
 * certainly safe comes out, redacted, and just enough is held back that a secret or a phone number split across
 * pieces is still caught whole. The concatenated output equals the redaction of the concatenated input.
 *
 * What is held back, from the end of the text received so far:
 * - the last `HOLD_BACK` characters: every detector decides from at most that much context after a span, and no
 *   span with blanks inside (phone, card, IBAN) is longer;
 * - the whole run of non-blank characters that reaches into them (a token, an e-mail, a URL with credentials),
 *   up to `MAX_HOLD` characters;
 * - a PEM private key whose END line has not arrived yet;
 * - any span found that reaches into them.
 * The last `CONTEXT` characters already sent are kept (not sent again) as context for the detectors.
 */
import { Effect, Stream } from "effect"
import type { PiiSpan } from "./Pii.js"
import { defaultPiiOptions, findPii, type PiiOptions, redactSpans } from "./Redact.js"

/** Longest distance over which detectors look after a span, and longest span containing blanks. */
export const HOLD_BACK = 64
/** Context kept from the text already sent: detectors look up to this far before a span (phone and SSN hints). */
const CONTEXT = 64
/** A token or key longer than this is sent on, redacted as far as it can be: no secret format is that long. */
const MAX_HOLD = 16 * 1024

export interface StreamRedactor {
  /** Takes the next piece of text; returns the text that can be sent now (possibly empty). */
  readonly push: (delta: string) => string
  /** Returns everything still held back, redacted: call once, at the end. */
  readonly flush: () => string
}

const isBlank = (char: string | undefined) => char === undefined || /\s/.test(char)

/** Where sending can stop in `text` (context + pending) without cutting a span that might still grow. */
const safeCut = (text: string, pendingStart: number, spans: ReadonlyArray<PiiSpan>): number => {
  let cut = text.length - HOLD_BACK
  if (cut <= pendingStart) return pendingStart
  const floor = Math.max(pendingStart, text.length - MAX_HOLD)
  // Not inside a run of non-blank characters.
  while (cut > floor && !isBlank(text[cut - 1]) && !isBlank(text[cut])) cut--
  // Not inside a private key still waiting for its END line.
  const begin = text.lastIndexOf("-----BEGIN", cut)
  if (begin >= pendingStart && text.indexOf("-----END", begin) === -1) cut = Math.max(floor, begin)
  // Not inside a span (spans are sorted and do not overlap).
  for (const span of spans) if (span.start < cut && span.end > cut) cut = Math.max(floor, span.start)
  return Math.max(cut, pendingStart)
}

/**
 * The spans reaching into the text not sent yet. One that starts in the context was sent already (it cannot happen
 * with the hold-back above, but if it did, the rest of it is still redacted).
 */
const spansAfter = (text: string, pendingStart: number, options: PiiOptions): Array<PiiSpan> =>
  findPii(text, options)
    .filter((span) => span.end > pendingStart)
    .map((span) => (span.start >= pendingStart ? span : { ...span, start: pendingStart }))

export const makeStreamRedactor = (options: PiiOptions = defaultPiiOptions): StreamRedactor => {
  let context = ""
  let pending = ""
  // Detection runs again only once the pending text has grown by an eighth: a long token arriving in small pieces
  // then costs a constant amount of work per character, not a rescan of everything held back at every piece.
  let scannedLength = 0

  const emit = (text: string, pendingStart: number, cut: number, spans: ReadonlyArray<PiiSpan>) => {
    const sent = spans
      .filter((span) => span.start >= pendingStart && span.end <= cut)
      .map((span) => ({ ...span, start: span.start - pendingStart, end: span.end - pendingStart }))
    const output = redactSpans(text.slice(pendingStart, cut), sent)
    context = text.slice(Math.max(0, cut - CONTEXT), cut)
    pending = text.slice(cut)
    scannedLength = pending.length
    return output
  }

  return {
    push: (delta) => {
      pending += delta
      if (pending.length <= HOLD_BACK || pending.length - scannedLength < pending.length / 8) return ""
      const text = context + pending
      const spans = spansAfter(text, context.length, options)
      return emit(text, context.length, safeCut(text, context.length, spans), spans)
    },
    flush: () => {
      const text = context + pending
      return emit(text, context.length, text.length, spansAfter(text, context.length, options))
    }
  }
}

/** The same for an Effect `Stream` of text pieces: pieces that would be empty are dropped. */
export const redactStream = <E, R>(
  stream: Stream.Stream<string, E, R>,
  options: PiiOptions = defaultPiiOptions
): Stream.Stream<string, E, R> =>
  Stream.suspend(() => {
    const redactor = makeStreamRedactor(options)
    return stream.pipe(
      Stream.map(redactor.push),
      Stream.concat(Stream.fromEffect(Effect.sync(redactor.flush))),
      Stream.filter((text) => text.length > 0)
    )
  })
