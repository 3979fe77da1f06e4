/**
 * Where traces go: the OTLP/HTTP traces URL from sluice's and OpenTelemetry's
 * settings. Apart from `actors/runtime/tracing.ts` so that deciding whether tracing
 * is on does not load the OpenTelemetry SDK (it is loaded only when on).
 *
 * @module
 */

/**
 * The OTLP traces URL from the configuration and the standard OpenTelemetry
 * variables, or undefined (tracing off): `SLUICE_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_ENDPOINT` are base URLs (`/v1/traces` is appended);
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is.
 */
export function otlpTracesUrl(
  sluiceEndpoint: string | undefined,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): string | undefined {
  const base = (u: string) => `${u.replace(/\/+$/, "")}/v1/traces`;
  if (sluiceEndpoint) return base(sluiceEndpoint);
  const full = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (full) return full;
  const b = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return b ? base(b) : undefined;
}
