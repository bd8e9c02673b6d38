#!/bin/sh
# The entrypoint of services.Containerfile: postgres, redis-server or haproxy in the foreground.
set -eu
case "${1:-postgres}" in
postgres)
    shift || true
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
        chown postgres "$pwfile" "$PGDATA"
        su postgres -s /bin/sh -c "initdb -D '$PGDATA' -U '${POSTGRES_USER:-postgres}' \
            --pwfile='$pwfile' --auth-host=scram-sha-256 --auth-local=trust -E UTF8" >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        su postgres -s /bin/sh -c "pg_ctl -D '$PGDATA' -o '-c listen_addresses=' -w start" >/dev/null
        if [ "${POSTGRES_DB:-postgres}" != postgres ]; then
            su postgres -s /bin/sh -c "createdb -U '${POSTGRES_USER:-postgres}' '$POSTGRES_DB'"
        fi
        su postgres -s /bin/sh -c "pg_ctl -D '$PGDATA' -m fast -w stop" >/dev/null
    fi
    exec su postgres -s /bin/sh -c 'exec postgres -D "$PGDATA" -c listen_addresses="*" "$@"' -- sh "$@"
    ;;
redis-server)
    shift
    # Protected mode refuses every client but loopback when there is no password.
    exec redis-server --protected-mode no --bind 0.0.0.0 "$@"
    ;;
*)
    exec "$@"
    ;;
esac
