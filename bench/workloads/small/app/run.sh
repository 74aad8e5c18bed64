#!/bin/sh
echo "bench-small: $APP_MODE $*"
