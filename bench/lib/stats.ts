/** Percentiles and the spread of repeated runs. */

/** The q-quantile (0..1) of ascending values, linearly interpolated; NaN when empty. */
export const quantile = (sorted: ArrayLike<number>, q: number): number => {
  if (sorted.length === 0) return NaN
  const position = (sorted.length - 1) * q
  const lower = Math.floor(position)
  const upper = Math.min(sorted.length - 1, lower + 1)
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower)
}

export const ascending = (values: Iterable<number>): Float64Array => Float64Array.from(values).sort()

/** Min, median and max of the repeated runs of one configuration: the noise of the figure. */
export interface Spread {
  readonly min: number
  readonly median: number
  readonly max: number
}

export const spread = (values: ReadonlyArray<number>): Spread => {
  const sorted = ascending(values.filter((value) => Number.isFinite(value)))
  return { min: sorted[0] ?? NaN, median: quantile(sorted, 0.5), max: sorted[sorted.length - 1] ?? NaN }
}

export const round = (value: number, digits = 2): number =>
  Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : value

export const roundSpread = (value: Spread, digits = 2): Spread => ({
  min: round(value.min, digits),
  median: round(value.median, digits),
  max: round(value.max, digits)
})

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
