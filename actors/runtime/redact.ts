/**
 * Masks credentials inside URLs wherever sluice shows them (status, health,
 * dashboard, logs, banner, `--print-config`): the userinfo
 * (`http://user:pass@host` → `http://***@host`) and the values of query
 * parameters whose name looks like a credential (`api_key`, `token`,
 * `secret`, `password`, `signature`, ...). The URL actually used is not
 * changed: only what is displayed.
 *
 * @module
 */

/** Query parameter names treated as credentials. */
const CREDENTIAL_PARAM =
  /^(.*[_-])?(api[_-]?key|apikey|key|token|access[_-]?token|auth|authorization|secret|client[_-]?secret|password|passwd|pwd|pass|sig|signature|credential|credentials|session|x-amz-signature|x-amz-credential|x-amz-security-token)$/i;

const MASK = "***";

/** `url` with its userinfo and credential-looking query values masked; other text unchanged. */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactText(url);
  }
  if (u.username || u.password) {
    u.username = MASK;
    u.password = "";
  }
  let changed = false;
  for (const [k] of u.searchParams) {
    if (CREDENTIAL_PARAM.test(k)) {
      u.searchParams.set(k, MASK);
      changed = true;
    }
  }
  const out = u.toString();
  return changed ? out.replaceAll(encodeURIComponent(MASK), MASK) : out;
}

const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;
const QUERY_CREDENTIAL = /([?&;])([^=&\s"'<>#]+)=([^&\s"'<>#]*)/g;

/** Masks every URL userinfo and credential-looking query value found in free text (log lines). */
export function redactText(text: string): string {
  if (!text.includes("://") && !text.includes("=")) return text;
  return text.replace(USERINFO, `$1${MASK}@`).replace(
    QUERY_CREDENTIAL,
    (all, sep: string, name: string) => CREDENTIAL_PARAM.test(name) ? `${sep}${name}=${MASK}` : all,
  );
}
