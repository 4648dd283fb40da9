#!/bin/sh
# Turns this process into one simulated node, then becomes the node's sshd (so the PID the
# cluster holds is the sshd's). It runs as root, already inside the node's network namespace and
# in fresh mount and UTS namespaces made by `unshare --mount --uts --propagation private`.
#
# Usage: sshcluster_node.sh NODE_DIR USER HOSTNAME ADDRESS/PREFIX PYTHON CHECKOUT
#   NODE_DIR  root-side directory holding sshd_config, ssh_host_ed25519_key, authorized_keys,
#             hosts and, when PYTHON is "old", python3 (the stand-in to install); it may be
#             under /tmp, which is hidden once the node's own /tmp is mounted, so everything
#             is copied to the node's /run first
#   PYTHON    system | missing | old
#   CHECKOUT  the coordinator's patas checkout, hidden from the node
set -eu
node_dir=$1 user=$2 hostname=$3 address=$4 python=$5 checkout=$6
home=/home/$user
state=/run/patas-node

# This mount namespace began as a copy of the root one, including the bind mounts that name
# network namespaces (other clusters' too). Drop them, or they would keep those namespaces and
# their veths alive after their own cluster deletes them.
if mountpoint -q /run/netns; then umount -n -l /run/netns; fi

# `mount -n` everywhere: without it libmount creates /run/mount in the root namespace's /run.
mount -n -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -m 0755 /run/sshd
mkdir -m 0700 $state
install -m 0600 "$node_dir/sshd_config" "$node_dir/ssh_host_ed25519_key" "$node_dir/authorized_keys" $state/
install -m 0644 "$node_dir/hosts" $state/hosts
if [ "$python" = old ]; then install -m 0755 "$node_dir/python3" $state/python3; fi
mount -n --bind $state/hosts /etc/hosts

# Private home and scratch directories: what the node's user writes stays on the node.
mount -n -t tmpfs -o mode=0755,nosuid,nodev tmpfs /home
install -d -m 0700 -o "$user" -g "$user" "$home" "$home/.ssh"
install -m 0600 -o "$user" -g "$user" $state/authorized_keys "$home/.ssh/authorized_keys"
for dir in /tmp /var/tmp /dev/shm; do
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dir"
done
# Nor does a node see the coordinator's checkout (world-readable here, absent on a real node):
# an agent that ran only because it could import patas from it would pass here and fail there.
if [ -d "$checkout" ]; then mount -n -t tmpfs -o ro,mode=0755 tmpfs "$checkout"; fi

# No Python, or an old one: an overlay on /usr/bin (also /bin, a symlink to it) in which
# python3 is gone, even by absolute path, or replaced by the stand-in.
if [ "$python" != system ]; then
  mkdir $state/usr-bin $state/usr-bin.work
  mount -n -t overlay -o "lowerdir=/usr/bin,upperdir=$state/usr-bin,workdir=$state/usr-bin.work" overlay /usr/bin
  real=$(readlink -f /usr/bin/python3)
  if [ "$python" = old ]; then
    # The stand-in's shebang names where the real interpreter hides.
    hidden=$(sed -n '1s/^#!//p' $state/python3)
    cp "$real" "$hidden"
  fi
  rm -f /usr/bin/python /usr/bin/python3 /usr/bin/python3.* /usr/bin/python3-*
  if [ "$python" = old ]; then
    install -m 0755 $state/python3 /usr/bin/python3
    ln -s python3 /usr/bin/python3.8
  fi
fi

printf '%s' "$hostname" >/proc/sys/kernel/hostname
printf 'link set lo up\naddr add %s dev eth0\nlink set eth0 up\n' "$address" | ip -batch -
exec /usr/sbin/sshd -D -e -f $state/sshd_config
