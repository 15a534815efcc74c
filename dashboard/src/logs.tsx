// An instance's stdout and stderr, following new lines while open (root relays them from the worker).
import { useEffect, useRef, useState } from 'preact/hooks';
import { stream } from './api.ts';
import { useLive } from './live.tsx';

const MAX_CHARS = 200_000;

export function Logs({ serviceId, n }: { serviceId: string; n: number }) {
  const live = useLive();
  const [text, setText] = useState('');
  const [problem, setProblem] = useState('');
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const h = stream(live.session.token, `/dashboard/logs/${encodeURIComponent(serviceId)}/${n}`, (event, data) => {
      if (event === 'log') {
        const d = data as { stream: string; text: string };
        const add = d.stream === 'stderr' ? d.text.replace(/^(?=.)/gm, '[stderr] ') : d.text;
        setText((t) => (t + add).slice(-MAX_CHARS));
        setProblem('');
      } else if (event === 'problem') setProblem((data as { message: string }).message);
    });
    return () => h.close();
  }, [serviceId, n]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return (
    <div class="logs">
      <label class="inline"><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow new lines</label>
      {problem && <p class="error" role="alert">{problem}</p>}
      <pre ref={pre} tabIndex={0} aria-label={`Output of instance ${n}`} data-testid="logs">{text || '(no output yet)'}</pre>
    </div>
  );
}
