# kterm's default sandbox image: a useful shell for people who use kubectl, git and python.
# Built by `kterm image build` (tag kterm-sandbox:latest), which needs a Docker that can pull
# debian:bookworm-slim and reach dl.k8s.io. The container runs as user 1000 with a read-only
# root; kterm mounts tmpfs (or a volume) on /home/user and /home/user/workspace.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bash tmux vim-tiny less curl ca-certificates jq git python3 procps locales-all \
 && rm -rf /var/lib/apt/lists/*

# kubectl, the stable release for this machine's architecture, checked against its sha256.
RUN set -eu; arch="$(dpkg --print-architecture)"; \
    version="$(curl -fsSL https://dl.k8s.io/release/stable.txt)"; \
    curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/${version}/bin/linux/${arch}/kubectl"; \
    echo "$(curl -fsSL "https://dl.k8s.io/release/${version}/bin/linux/${arch}/kubectl.sha256")  /usr/local/bin/kubectl" | sha256sum -c -; \
    chmod 0755 /usr/local/bin/kubectl

RUN groupadd --gid 1000 user \
 && useradd --uid 1000 --gid 1000 --home-dir /home/user --shell /bin/bash user \
 && mkdir -p /home/user/workspace && chown -R 1000:1000 /home/user \
 && ln -s /usr/bin/vim.tiny /usr/local/bin/vim

ENV LANG=C.UTF-8 TERM=xterm-256color
USER 1000:1000
WORKDIR /home/user/workspace
CMD ["bash", "-l"]
