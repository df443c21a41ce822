# vipd in an empty image: the static binary from `make build` (CGO_ENABLED=0) and nothing else, so
# `docker-compose build` needs no registry. Built by the legacy builder: no BuildKit syntax here.
FROM scratch
# The label lets `make demo-down` and the suite find this project's images, including the untagged ones an
# earlier build left behind when a rebuild moved the tag.
LABEL io.github.vipd.image="vipd-agent"
COPY bin/vipd /vipd
# WORKDIR creates /data (the Raft data dir) in the image; it lives in the container's own filesystem, so
# `docker restart` and `docker kill` + `docker start` keep the node's Raft identity, and `down` removes it.
WORKDIR /data
WORKDIR /
EXPOSE 6443 7946 7947 7948
ENTRYPOINT ["/vipd"]
CMD ["agent", "-help"]
