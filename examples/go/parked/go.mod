module parkscope.example/parked

go 1.19
