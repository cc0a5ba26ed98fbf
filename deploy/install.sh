#!/bin/sh
# Installs a release build of prp into the layout README.md ("Install") describes:
#
#   /usr/bin/prp-host                        the server and its command line
#   /usr/lib/prp/plugins/*.so                the plugins (the host's default Plugins:Directory)
#   /etc/prp/appsettings.json                the configuration (root:prp 0640; never overwritten)
#   /var/lib/prp                             the state directory (prp:prp 0750)
#   /lib/systemd/system/prp.service          the hardened unit
#   /usr/lib/sysusers.d/prp.conf             the prp system user
#   /usr/share/doc/prp/                      README.md and the nginx example
#
# Build first:  cargo build --release -p prp-host -p password-reset-authenticator
# Then:         sudo deploy/install.sh
#
# DESTDIR stages the whole tree under another root (for packaging, and for tests): nothing
# outside it is touched, no user is created and no ownership is changed.
# PRP_HOST_BIN and PRP_PLUGINS (space-separated) choose other files than target/release/'s.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
bin=${PRP_HOST_BIN:-$top/target/release/prp-host}
plugins=${PRP_PLUGINS:-$top/target/release/libpassword_reset_authenticator.so}

for f in "$bin" $plugins; do
    if [ ! -f "$f" ]; then
        echo "install.sh: $f not found; build it first:" >&2
        echo "  cargo build --release -p prp-host -p password-reset-authenticator" >&2
        exit 1
    fi
done

d() { install -d -m "$1" "$DESTDIR$2"; }
d 0755 /usr/bin
d 0755 /usr/lib/prp/plugins
d 0755 /etc/prp
d 0750 /var/lib/prp
d 0755 /lib/systemd/system
d 0755 /usr/lib/sysusers.d
d 0755 /usr/share/doc/prp

install -m 0755 "$bin" "$DESTDIR/usr/bin/prp-host"
# Plugins are root's and nobody else can write them (the host refuses ones others can write).
pins=""
for p in $plugins; do
    name=$(basename "$p")
    install -m 0644 "$p" "$DESTDIR/usr/lib/prp/plugins/$name"
    hash=$(sha256sum "$DESTDIR/usr/lib/prp/plugins/$name" | cut -d' ' -f1)
    pins="$pins${pins:+, }\"$name\": \"$hash\""
done
install -m 0644 "$top/deploy/prp.service" "$DESTDIR/lib/systemd/system/prp.service"
install -m 0644 "$top/deploy/prp.sysusers" "$DESTDIR/usr/lib/sysusers.d/prp.conf"
install -m 0644 "$top/README.md" "$DESTDIR/usr/share/doc/prp/README.md"
install -m 0644 "$top/deploy/nginx/prp.conf" "$DESTDIR/usr/share/doc/prp/nginx-prp.conf"
install -m 0644 "$top/config-samples/appsettings.production.json" \
    "$DESTDIR/usr/share/doc/prp/appsettings.production.json"

config="$DESTDIR/etc/prp/appsettings.json"
if [ -e "$config" ]; then
    echo "kept the existing $config; the plugins' pins are now:"
    echo "  \"Sha256\": { $pins }"
else
    # The sample, with the installed plugins pinned.
    sed "s|\"Sha256\": {}|\"Sha256\": { $pins }|" \
        "$top/config-samples/appsettings.production.json" > "$config.new"
    chmod 0640 "$config.new"
    mv "$config.new" "$config"
    echo "installed $config: edit its connection strings and PublicUrl (README.md, Install)"
fi

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then
    if ! getent passwd prp >/dev/null; then
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers prp.conf
        else
            useradd --system --home-dir /var/lib/prp --no-create-home \
                --shell /usr/sbin/nologin --comment "prp, the Password Reset Portal" prp
        fi
    fi
    chown root:prp /etc/prp/appsettings.json
    chown prp:prp /var/lib/prp
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
echo "prp installed${DESTDIR:+ under $DESTDIR}"
