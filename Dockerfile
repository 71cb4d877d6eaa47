# The one o2c image: the operator (default command) and every runtime role
# (`node /app/dist/runtime/src/main.js --role <role> --config /etc/o2c/config.json`).
# BASE_IMAGE is any Node 24 image with a shell; BUILD_IMAGE (default: the same) also needs npm.
# `make image` passes locally built bases (scripts/image/base.sh) and an offline npm cache.
ARG BASE_IMAGE=node:24-bookworm-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

# --- dependencies: the lockfile's packages, from the staged cache when there is one ---------------
FROM ${BUILD_IMAGE} AS deps
WORKDIR /src
# `.o2c/imag[e]` matches nothing unless `make image` staged an npm cache (its npm-cache/ lands in
# /src/npm-cache); without one, npm fetches from the registry as usual.
COPY package.json package-lock.json .o2c/imag[e] ./
# No package the image needs runs an install script; the dev tools that do (node, buf, esbuild) are
# not needed to compile.
ENV NPM_CONFIG_AUDIT=false NPM_CONFIG_FUND=false NPM_CONFIG_UPDATE_NOTIFIER=false
# prod/ gets the production packages, trimmed of type declarations, source maps, TypeScript sources
# and docs (dead weight at run time); /src gets what tsc needs.
RUN if [ -d npm-cache ]; then set -- --offline --cache /src/npm-cache; fi \
 && mkdir prod && cp package.json package-lock.json prod/ \
 && (cd prod && npm ci --omit=dev --ignore-scripts "$@") \
 && npm ci --omit=optional --ignore-scripts "$@" \
 && rm -rf npm-cache \
 && find prod/node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
      -o -name '*.map' -o -name '*.ts' -o -name '*.md' -o -name '*.markdown' \) -delete \
 && rm -rf prod/node_modules/@types prod/node_modules/*/node_modules/@types

# --- build: TypeScript to JavaScript, no loader at run time ----------------------------------------
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY crds crds
COPY runtime/src runtime/src
COPY operator/src operator/src
RUN node_modules/.bin/tsc -p tsconfig.build.json \
 && mkdir -p empty

# --- runtime ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /src/prod/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
# The embedded store's directory (a volume in pods), owned by the runtime user for plain docker runs.
COPY --from=build --chown=65532:65532 /src/empty /var/lib/o2c
COPY --from=build --chown=65532:65532 /src/empty /app/.cache/node
USER 65532:65532
# V8 code cache of every module but the entry points (they run when imported), made as the runtime
# user (the cache is keyed by uid): a start skips compiling them. Read-only at run time; Node reads it and gives up writing quietly.
ENV NODE_COMPILE_CACHE=/app/.cache/node
RUN node --input-type=module -e "import { readdirSync } from 'node:fs'; \
      for (const f of readdirSync('dist', { recursive: true })) \
        if (f.endsWith('.js') && !/(^|\/)(main|o2c|generate)\.js$/.test(f)) await import('/app/dist/' + f);" \
 && test -n "$(ls .cache/node)"
EXPOSE 8080 9090
CMD ["node", "/app/dist/operator/src/main.js"]
