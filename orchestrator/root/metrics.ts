// Prometheus text exposition (format 0.0.4) for root's /metrics: counters kept here, gauges read at
// scrape time from whoever owns the number.

type Labels = Record<string, string>;

function escapeValue(v: string): string {
  // Counted on every placement: the common value needs no escaping and is returned as it is.
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeValue(String(labels[k]))}"`).join(',')}}`;
}

interface Family {
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  samples: Map<string, number>;
  collect?: () => Array<[Labels, number]> | Promise<Array<[Labels, number]>>;
}

const BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

export class Metrics {
  private readonly families = new Map<string, Family>();

  private family(name: string, help: string, type: Family['type']): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { help, type, samples: new Map() };
      this.families.set(name, f);
    }
    return f;
  }

  counter(name: string, help: string): (labels?: Labels, by?: number) => void {
    const f = this.family(name, help, 'counter');
    return (labels = {}, by = 1) => {
      const key = labelText(labels);
      f.samples.set(key, (f.samples.get(key) ?? 0) + by);
    };
  }

  gauge(name: string, help: string, collect: () => Array<[Labels, number]> | Promise<Array<[Labels, number]>>): void {
    this.family(name, help, 'gauge').collect = collect;
  }

  /** A histogram of seconds. */
  histogram(name: string, help: string): (seconds: number, labels?: Labels) => void {
    const f = this.family(name, help, 'histogram');
    /** Label text → the ladder's sample keys, made once per label set (observed on every placement). */
    const ladders = new Map<string, string[]>();
    return (seconds, labels = {}) => {
      const l = labelText(labels);
      let keys = ladders.get(l);
      if (!keys) {
        keys = [...BUCKETS.map(String), '+Inf'].map((le) => `_bucket${labelText({ ...labels, le })}`);
        ladders.set(l, keys);
      }
      // Every bucket is written, zeros included: histogram_quantile needs the full ladder.
      keys.forEach((key, k) => f.samples.set(key, (f.samples.get(key) ?? 0) + (k === BUCKETS.length || seconds <= (BUCKETS[k] as number) ? 1 : 0)));
      f.samples.set(`_sum${l}`, (f.samples.get(`_sum${l}`) ?? 0) + seconds);
      f.samples.set(`_count${l}`, (f.samples.get(`_count${l}`) ?? 0) + 1);
    };
  }

  async render(): Promise<string> {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      if (f.collect) {
        for (const [labels, v] of await f.collect()) out.push(`${name}${labelText(labels)} ${v}`);
      } else {
        for (const [key, v] of f.samples) out.push(`${name}${key} ${v}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}
