// Deploy a descriptor (SLA v2.0) by pasting or uploading it. Root answers a rejected descriptor with
// JSON paths; the descriptor is then shown as a tree of its fields with each error at its field
// (a missing field appears where it belongs, marked missing).
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { ApiFailure, type FieldError } from './api.ts';
import { useLive } from './live.tsx';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const key = (seg: string) => seg.replace(/~1/g, '/').replace(/~0/g, '~');
const fieldId = (path: string) => `field${path.replace(/[^A-Za-z0-9]/g, '-')}`;

function Field({ name, value, path, errors }: { name: string; value: Json | undefined; path: string; errors: FieldError[] }): JSX.Element {
  const own = errors.filter((e) => e.path === path);
  const children: [string, Json | undefined][] = [];
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value)) children.push([k, v]);
    // Errors about fields that are not there (required ones) appear as their own rows.
    for (const e of errors) {
      if (!e.path.startsWith(`${path}/`)) continue;
      const seg = key(e.path.slice(path.length + 1).split('/')[0] ?? '');
      if (!children.some(([k]) => k === seg)) children.push([seg, undefined]);
    }
  }
  const scalar = value === undefined ? <em>missing</em>
    : value === null || typeof value !== 'object' ? <code>{JSON.stringify(value)}</code>
    : null;
  return (
    <li id={fieldId(path)} class={own.length ? 'invalid' : undefined} tabIndex={own.length ? -1 : undefined} data-path={path}>
      <span class="fname">{name}</span>{scalar && <>: {scalar}</>}
      {own.map((e, i) => <span key={i} class="field-error" role="note">⚠ {e.message}</span>)}
      {children.length > 0 && (
        <ul>
          {children.map(([k, v]) => <Field key={k} name={k} value={v} path={`${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`} errors={errors.filter((e) => e.path.startsWith(`${path}/`))} />)}
        </ul>
      )}
    </li>
  );
}

export function Deploy() {
  const live = useLive();
  const [text, setText] = useState('');
  const [failure, setFailure] = useState<{ message: string; errors: FieldError[]; doc: Json | undefined } | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState('');

  const upload = async (e: Event) => {
    const f = (e.currentTarget as HTMLInputElement).files?.[0];
    if (f) {
      setText(await f.text());
      setFailure(null);
      setDone('');
    }
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    setFailure(null);
    setDone('');
    let doc: Json;
    try {
      doc = JSON.parse(text) as Json;
    } catch (err) {
      setFailure({ message: `not JSON: ${(err as Error).message}`, errors: [], doc: undefined });
      return;
    }
    setBusy(true);
    try {
      const r = await live.api<{ applications: { application_name: string }[]; services: { microserviceID: string; name: string }[] }>('POST', '/application?deploy=true', doc);
      const names = r.applications.map((a) => a.application_name).join(', ');
      setDone(`Deployed ${names}: ${r.services.length} services, one instance each.`);
      live.announce(`deployed ${names}`);
      live.refresh();
      if (r.services[0]) location.hash = `#/apps/${r.services[0].microserviceID}`;
    } catch (err) {
      const f = err instanceof ApiFailure ? err : new ApiFailure(0, (err as Error).message, []);
      setFailure({ message: f.message, errors: f.errors.filter((x) => x.path !== ''), doc });
      if (f.errors.some((x) => x.path === '')) setFailure({ message: `${f.message}: ${f.errors.filter((x) => x.path === '').map((x) => x.message).join('; ')}`, errors: f.errors.filter((x) => x.path !== ''), doc });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="deploy-title" class="deploy">
      <h1 id="deploy-title">Deploy a descriptor</h1>
      <form onSubmit={submit}>
        <label for="sla-file">Upload a descriptor (JSON, SLA v2.0)</label>
        <input id="sla-file" type="file" accept=".json,application/json" onChange={(e) => void upload(e)} />
        <label for="sla-text">…or paste it</label>
        <textarea id="sla-text" rows={16} spellcheck={false} value={text} onInput={(e) => setText(e.currentTarget.value)}
          aria-invalid={failure ? 'true' : undefined} aria-describedby={failure ? 'deploy-errors' : undefined} />
        <div class="row">
          <button type="submit" disabled={busy || text.trim() === ''}>{busy ? 'Deploying…' : 'Deploy'}</button>
        </div>
      </form>
      {done && <p class="ok" role="status">{done}</p>}
      {failure && (
        <div id="deploy-errors" class="failure">
          <p class="error" role="alert">{failure.message}{failure.errors.length > 0 && ` (${failure.errors.length} field${failure.errors.length > 1 ? 's' : ''})`}</p>
          {failure.errors.length > 0 && (
            <ul class="error-list">
              {failure.errors.map((e, i) => <li key={i}><a href={`#${fieldId(e.path)}`} onClick={(ev) => {
                ev.preventDefault();
                document.getElementById(fieldId(e.path))?.focus();
              }}><code>{e.path}</code></a>: {e.message}</li>)}
            </ul>
          )}
          {failure.doc !== undefined && failure.errors.length > 0 && (
            <>
              <h2>The descriptor, with each error at its field</h2>
              <ul class="fields"><Field name="descriptor" value={failure.doc} path="" errors={failure.errors} /></ul>
            </>
          )}
        </div>
      )}
    </section>
  );
}
