# The fake kube-apiserver of the compose suite (integration/apiserver), static binary only.
FROM scratch
LABEL io.github.vipd.image="vipd-apiserver"
COPY bin/apiserver /apiserver
EXPOSE 6443 8080
ENTRYPOINT ["/apiserver"]
