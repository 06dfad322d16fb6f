// Numbers as the results, events and safety pages write them.

/** `+20.92 %`, `-3.10 %`: a relative effect (a fraction) with its sign always written, so the
 * direction reads without colour. */
export function signedPercent(fraction, digits = 2) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return 'n/a';
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(digits)} %`;
}

/** Grouped thousands and at most `digits` decimals; `n/a` for a missing value. */
export function number(value, digits = 4) {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', {maximumFractionDigits: digits});
}
