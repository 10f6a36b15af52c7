// Stands in for the `whatwg-url` package in Lambda bundles. Its only user there is node-fetch 2
// (under @kubernetes/client-node), which takes Node's own `URL` whenever it exists and falls back
// to whatwg-url only on Node < 10; bundling it would add ~280 KB (its Unicode tables) for nothing.
module.exports = { URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams };
