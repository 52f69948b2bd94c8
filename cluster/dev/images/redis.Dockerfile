# The job store's image for the dev node: Debian's redis-server (7.0, ACL selectors
# included), under the name csflow's Redis Deployment uses (redis:7.2.7-alpine), which
# no registry here can serve. The Deployment gives the command, user and volumes; as in
# the official image, /etc/redis is not the package's private folder (Debian makes it
# 2750 redis:redis, which the Deployment's user 999 could not pass into to read its ACL
# file mounted under it).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /etc/redis/* \
 && chmod 0755 /etc/redis
