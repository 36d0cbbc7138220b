module parkscope.example/loadgen

go 1.19
