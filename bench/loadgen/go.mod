module waypoint-webhook.invalid/loadgen

go 1.26.0
