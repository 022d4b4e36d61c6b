#!/usr/bin/env bash
# Writes the Unity .meta file for every package file and folder that lacks one.
# Packages installed from a git URL are immutable: Unity ignores assets without a .meta there,
# so the .meta files are committed. GUIDs are derived from the path (md5) so reruns are stable.
# Usage: Tools~/make-meta.sh [--check]    (--check: list missing .meta files, exit 1 if any)
set -euo pipefail
pkg="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
[ "${1:-}" = "--check" ] && check=1
missing=0
cd "$pkg"
while IFS= read -r -d '' p; do
    p="${p#./}"
    [ -e "$p.meta" ] && continue
    if [ $check -eq 1 ]; then echo "missing $p.meta" >&2; missing=1; continue; fi
    guid="$(printf 'com.vibesync.bridge/%s' "$p" | md5sum | cut -c1-32)"
    if [ -d "$p" ]; then
        printf 'fileFormatVersion: 2\nguid: %s\nfolderAsset: yes\nDefaultImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" > "$p.meta"
    else
        case "$p" in
            *.cs) printf 'fileFormatVersion: 2\nguid: %s\nMonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n  executionOrder: 0\n  icon: {instanceID: 0}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" ;;
            *.asmdef) printf 'fileFormatVersion: 2\nguid: %s\nAssemblyDefinitionImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" ;;
            package.json) printf 'fileFormatVersion: 2\nguid: %s\nPackageManifestImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" ;;
            *.md|*.txt|*.json) printf 'fileFormatVersion: 2\nguid: %s\nTextScriptImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" ;;
            *) printf 'fileFormatVersion: 2\nguid: %s\nDefaultImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$guid" ;;
        esac > "$p.meta"
        echo "wrote $p.meta" >&2
    fi
done < <(find . -mindepth 1 \( -name '*~' -o -name '.*' \) -prune -o ! -name '*.meta' -print0)
exit $missing
