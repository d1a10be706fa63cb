# syntax=docker/dockerfile:1
# Countersign: build with the full toolchain, run on a distroless Node.js 20 image as a non-root user.

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY clients/sdk/package.json clients/sdk/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:22-bookworm-slim AS runtime-deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY clients/sdk/package.json clients/sdk/
RUN npm ci --omit=dev --no-audit --no-fund

FROM gcr.io/distroless/nodejs22-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist
COPY --from=build /app/clients/sdk/package.json ./clients/sdk/package.json
COPY --from=build /app/clients/sdk/dist ./clients/sdk/dist
USER nonroot
EXPOSE 50051 8443 9090 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/nodejs/bin/node", "dist/clients/cli/countersign.js"]
CMD ["serve", "--policy", "/etc/countersign/policy/policies.yaml", "--grpc-listen", "0.0.0.0:50051", "--connect-listen", "0.0.0.0:8443", "--ops-listen", "0.0.0.0:9090"]
