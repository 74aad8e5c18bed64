#!/bin/sh
echo "$GREETING, ${1:-world} ($(cat /app/config/settings.conf))"
