// The dashboard's shell: login, then a header with the three views (hash routes, so root serves one
// page at `/`), the live feed's connection state, and a polite live region for announcements.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call, saveSession, savedSession, whenUnauthorized, type Session } from './api.ts';
import { Applications } from './applications.tsx';
import { Deploy } from './deploy.tsx';
import { Fleet } from './fleet.tsx';
import { LiveProvider, useLive } from './live.tsx';
import './style.css';

function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const r = await call<{ token: string; username: string; role: string; refresh_token?: string }>(null, 'POST', '/auth/login', { username, password });
      onLogin({ token: r.token, username: r.username, role: r.role, ...(r.refresh_token ? { refresh_token: r.refresh_token } : {}) });
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Canopy</h1>
        <p class="muted">Log in with a Canopy user (the same as <code>canopy login</code>).</p>
        <label for="username">User</label>
        <input id="username" name="username" autocomplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
        {error && <p class="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>{busy ? 'Logging in…' : 'Log in'}</button>
      </form>
    </main>
  );
}

function Shell({ session, onLogout }: { session: Session; onLogout: () => void }) {
  const route = useRoute();
  const live = useLive();
  const view = route[0] ?? 'apps';
  const tab = (id: string, label: string) => (
    <a href={`#/${id}`} aria-current={view === id ? 'page' : undefined}>{label}</a>
  );
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header>
        <span class="brand">Canopy</span>
        <nav aria-label="Views">
          {tab('apps', 'Applications')}
          {tab('fleet', 'Fleet')}
          {tab('deploy', 'Deploy')}
        </nav>
        <span class={`feed ${live.connected ? 'on' : 'off'}`} role="status">{live.connected ? 'live' : 'reconnecting…'}</span>
        <span class="user">{session.username}</span>
        <button type="button" class="secondary" onClick={onLogout}>Log out</button>
      </header>
      <main id="main" tabIndex={-1}>
        {view === 'fleet' ? <Fleet clusterId={route[1]} />
          : view === 'deploy' ? <Deploy />
          : <Applications selected={route[1]} instance={route[2]} />}
      </main>
    </>
  );
}

function App() {
  const [session, setSession] = useState<Session | null>(savedSession);
  useEffect(() => whenUnauthorized(() => {
    saveSession(null);
    setSession(null);
  }), []);
  if (!session) {
    return <Login onLogin={(s) => {
      saveSession(s);
      setSession(s);
    }} />;
  }
  const logout = () => {
    saveSession(null);
    setSession(null);
  };
  return (
    <LiveProvider session={session}>
      <Shell session={session} onLogout={logout} />
    </LiveProvider>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
