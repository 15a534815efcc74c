// esbuild bundles imported CSS into app.css; for tsc such an import is only a side effect.
declare module '*.css';
